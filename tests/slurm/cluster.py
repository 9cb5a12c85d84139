"""A real single-node SLURM cluster on loopback, for the integration tests.

munged (unless one already answers), slurmctld and slurmd run with a slurm.conf
of our own in a temporary run folder, so /etc/slurm is neither needed nor touched:
- slurmctld and the client tools of the test (sbatch, squeue, ...) read it
  through SLURM_CONF;
- the jobs' own `srun` can not: the plugin's jobstep executor removes every
  SLURM_* variable (SLURM_CONF included) before it calls srun. So the cluster
  runs "configless", as many real sites do: slurmd fetches the config from
  slurmctld and links its cache at /run/slurm/conf, where srun looks when
  SLURM_CONF is unset and there is no /etc/slurm/slurm.conf.
Controller and node listen on free ports. Every daemon started here is stopped
by the PID in its pid file (TERM, wait, KILL), never by name, and the
/run/slurm/conf link is removed. Facts: docs/cluster.md.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

MUNGE_KEY = Path("/etc/munge/munge.key")
MUNGE_RUN = Path("/run/munge")
MUNGE_PID = MUNGE_RUN / "munged.pid"
SITE_CONF = Path("/etc/slurm/slurm.conf")
CONFIG_CACHE_LINK = Path("/run/slurm/conf")  # made by a configless slurmd
SBIN = Path("/usr/sbin")
PARTITION = "debug"
# Two stand-in GPUs: SLURM schedules, allocates and reports them like real ones
# (CUDA_VISIBLE_DEVICES is set in the job), so a stage asking for a GPU is
# checked end to end on a machine without one; the stage itself still computes
# on the CPU (execution.device). SLURM wants one device file per GPU and never
# opens it: any character device will do. Two, so the GPU stages that may run
# side by side (unet, unet_fold@k) do.
GPU_FILES = ("/dev/null", "/dev/zero")


class ClusterUnavailable(RuntimeError):
    """The daemons cannot run here (not root, packages missing, ...)."""


@dataclass
class Cluster:
    """A running cluster: its config, its node and partition, and what to stop."""

    run_dir: Path
    node: str
    partition: str = PARTITION
    gpus: int = len(GPU_FILES)
    memory_mb: int = 0  # the node's RealMemory: no job may ask for more
    made_run_slurm: bool = False  # /run/slurm did not exist before slurmd made it
    pid_files: list[Path] = field(default_factory=list)

    @property
    def conf(self) -> Path:
        return self.run_dir / "slurm.conf"

    def env(self) -> dict[str, str]:
        """The caller's environment with SLURM_CONF pointing at this cluster."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def tool(self, *args: str) -> str:
        """Run a SLURM client command against this cluster; its stdout."""
        proc = subprocess.run(list(args), env=self.env(), capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed: {proc.stderr.strip()}")
        return proc.stdout

    def job_info(self, job_id: str) -> dict[str, str]:
        """`scontrol show job` as key=value pairs (finished jobs stay visible MinJobAge seconds)."""
        text = self.tool("scontrol", "show", "job", "--oneliner", job_id)
        return dict(item.split("=", 1) for item in text.split() if "=" in item)


def _require() -> None:
    if os.geteuid() != 0:
        raise ClusterUnavailable("needs root to start munged, slurmctld and slurmd")
    for daemon in ("munged", "slurmctld", "slurmd"):
        if not (SBIN / daemon).exists():
            raise ClusterUnavailable(f"{SBIN / daemon} missing (Debian packages slurm-wlm, munge: "
                                     "scripts/install_system_deps.sh)")
    for tool in ("munge", "unmunge", "runuser", "sinfo", "squeue", "sbatch", "scontrol", "scancel"):
        if shutil.which(tool) is None:
            raise ClusterUnavailable(f"{tool} not on PATH (Debian packages slurm-wlm, munge)")
    if SITE_CONF.exists():
        # srun inside the jobs would read it instead of the test cluster's config
        raise ClusterUnavailable(f"{SITE_CONF} exists: this machine has a SLURM setup of its own")


def _wait(check, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise ClusterUnavailable(f"timed out after {timeout:.0f} s waiting for {what}")


def _munge_ok() -> bool:
    cred = subprocess.run(["munge", "-n"], capture_output=True)
    if cred.returncode != 0:
        return False
    return subprocess.run(["unmunge"], input=cred.stdout, capture_output=True).returncode == 0


def _start_munge(cluster: Cluster) -> None:
    if _munge_ok():
        return  # a munged already serves this machine: used, not ours to stop
    if not MUNGE_KEY.exists():
        MUNGE_KEY.parent.mkdir(parents=True, exist_ok=True)
        MUNGE_KEY.write_bytes(os.urandom(1024))
        shutil.chown(MUNGE_KEY, "munge", "munge")
        MUNGE_KEY.chmod(0o400)
    subprocess.run(["install", "-d", "-o", "munge", "-g", "munge", "-m", "755", str(MUNGE_RUN)], check=True)
    proc = subprocess.run(["runuser", "-u", "munge", "--", str(SBIN / "munged")], capture_output=True, text=True)
    if proc.returncode != 0:
        raise ClusterUnavailable(f"munged failed to start: {proc.stderr.strip()}")
    cluster.pid_files.append(MUNGE_PID)
    _wait(_munge_ok, "munge to answer")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _free_memory_mb() -> int:
    """MemAvailable from /proc/meminfo, in MB."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) // 1024
    raise ClusterUnavailable("/proc/meminfo has no MemAvailable")


def _write_conf(cluster: Cluster) -> int:
    """slurm.conf and gres.conf in the run folder; returns the controller's port."""
    r = cluster.run_dir
    port = _free_port()
    for sub in ("state", "spool", "log"):
        (r / sub).mkdir(parents=True, exist_ok=True)
    node = cluster.node
    cluster.memory_mb = int(_free_memory_mb() * 0.9)
    cluster.conf.write_text(f"""# written by tests/slurm/cluster.py for one test session
ClusterName=echocemtest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={port}
SlurmdPort={_free_port()}
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmctldParameters=enable_configless
GresTypes=gpu
ReturnToService=2
# finished jobs stay visible to squeue/scontrol this long: the plugin's squeue
# status checks need it, and the test reads every job of the run afterwards
MinJobAge=3600
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd.log
NodeName={node} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} RealMemory={cluster.memory_mb} Gres=gpu:{cluster.gpus} State=UNKNOWN
PartitionName={cluster.partition} Nodes={node} Default=YES MaxTime=INFINITE State=UP
""")
    # served to slurmd together with slurm.conf
    (r / "gres.conf").write_text("".join(f"NodeName={node} Name=gpu File={f}\n" for f in GPU_FILES))
    return port


def start_cluster(run_dir: Path) -> Cluster:
    """Start munge (if none answers), slurmctld and slurmd; return once the node is idle."""
    _require()
    cluster = Cluster(run_dir=run_dir, node=socket.gethostname().split(".")[0],
                      made_run_slurm=not CONFIG_CACHE_LINK.parent.exists())
    try:
        _start_munge(cluster)
        port = _write_conf(cluster)
        no_conf_env = {k: v for k, v in os.environ.items() if k != "SLURM_CONF"}
        commands = {
            # -c: clean start, no saved state; each daemon forks and writes its pid file
            "slurmctld": ([str(SBIN / "slurmctld"), "-c", "-f", str(cluster.conf)], cluster.env()),
            "slurmd": ([str(SBIN / "slurmd"), "-c", "--conf-server", f"127.0.0.1:{port}"], no_conf_env),
        }
        for daemon, (command, env) in commands.items():
            pid_file = run_dir / f"{daemon}.pid"
            proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
            if proc.returncode != 0:
                log = run_dir / "log" / f"{daemon}.log"
                tail = log.read_text()[-2000:] if log.exists() else ""
                raise ClusterUnavailable(f"{daemon} failed to start: {proc.stderr.strip()}\n{tail}")
            _wait(pid_file.exists, pid_file.name, timeout=10)
            cluster.pid_files.append(pid_file)

        def idle() -> bool:
            out = subprocess.run(["sinfo", "-h", "-n", cluster.node, "-o", "%t"], env=cluster.env(),
                                 capture_output=True, text=True).stdout.strip()
            return out == "idle"

        try:
            _wait(idle, "the SLURM node to become idle")
        except ClusterUnavailable as exc:
            logs = "".join(f"\n--- {log.name}\n{log.read_text()[-1500:]}"
                           for log in sorted((run_dir / "log").glob("*.log")))
            raise ClusterUnavailable(f"{exc}{logs}") from None
    except BaseException:
        stop_cluster(cluster)
        raise
    return cluster


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _stop_pid(pid: int, grace_s: float = 10.0) -> None:
    """TERM, wait up to grace_s, then KILL."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _cancel_jobs(cluster: Cluster) -> None:
    """Cancel what is still queued or running (a failed test), so no job outlives the node."""
    try:
        if cluster.tool("squeue", "-h", "-o", "%i").split():
            cluster.tool("scancel", "--partition", cluster.partition)
            _wait(lambda: not cluster.tool("squeue", "-h", "-t", "R,CG", "-o", "%i").split(),
                  "cancelled jobs to end", timeout=20)
    except (RuntimeError, ClusterUnavailable, subprocess.TimeoutExpired):
        pass  # the daemons are stopped below whatever happens


def stop_cluster(cluster: Cluster) -> None:
    """Cancel leftover jobs, then stop every daemon we started, newest first, by its pid file."""
    if cluster.run_dir / "slurmctld.pid" in cluster.pid_files:
        _cancel_jobs(cluster)
    for pid_file in reversed(cluster.pid_files):
        try:
            pid = int(pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        _stop_pid(pid)
    cluster.pid_files.clear()
    try:
        if CONFIG_CACHE_LINK.is_symlink() and Path(os.readlink(CONFIG_CACHE_LINK)).is_relative_to(cluster.run_dir):
            CONFIG_CACHE_LINK.unlink()
        if cluster.made_run_slurm:
            CONFIG_CACHE_LINK.parent.rmdir()  # only if empty
    except OSError:
        pass

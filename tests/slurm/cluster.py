"""A real single-node SLURM cluster on loopback, for the integration test.

munged, slurmctld and slurmd are started with a slurm.conf of our own in a
temporary run folder (SLURM_CONF points the client tools at it) and stopped by
the PIDs in their pid files, never by name. Facts: ../shared/scale-out.md.
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
# Job steps (srun inside the batch job) read the default location, not SLURM_CONF,
# so the test's config is installed there for the cluster's lifetime and the
# previous file, if any, is put back afterwards.
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")
MARKER = "# written by tests/slurm/cluster.py\n"


class ClusterUnavailable(RuntimeError):
    """The daemons cannot run here (not root, packages missing, ...)."""


@dataclass
class Cluster:
    run_dir: Path
    node: str
    partition: str = "debug"
    pid_files: list[Path] = field(default_factory=list)

    @property
    def conf(self) -> Path:
        return self.run_dir / "slurm.conf"

    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}


def _require() -> None:
    if os.geteuid() != 0:
        raise ClusterUnavailable("needs root to start munged/slurmctld/slurmd")
    for tool in ("munged", "slurmctld", "slurmd", "sinfo", "squeue", "sbatch"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            raise ClusterUnavailable(f"{tool} not installed (Debian packages slurm-wlm, munge)")


def _wait(check, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise ClusterUnavailable(f"timed out waiting for {what}")


def _munge_ok() -> bool:
    munge = subprocess.run(["munge", "-n"], capture_output=True)
    if munge.returncode != 0:
        return False
    return subprocess.run(["unmunge"], input=munge.stdout, capture_output=True).returncode == 0


def _start_munge(cluster: Cluster) -> None:
    if _munge_ok():
        return  # a munged is already serving; not ours to stop
    if not MUNGE_KEY.exists():
        MUNGE_KEY.parent.mkdir(parents=True, exist_ok=True)
        MUNGE_KEY.write_bytes(os.urandom(1024))
        shutil.chown(MUNGE_KEY, "munge", "munge")
        MUNGE_KEY.chmod(0o400)
    subprocess.run(["install", "-d", "-o", "munge", "-g", "munge", "-m", "755", str(MUNGE_RUN)], check=True)
    proc = subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise ClusterUnavailable(f"munged failed to start: {proc.stderr.strip()}")
    cluster.pid_files.append(MUNGE_PID)
    _wait(_munge_ok, "munge to answer")


def _write_conf(cluster: Cluster) -> None:
    for sub in ("state", "spool", "log"):
        (cluster.run_dir / sub).mkdir(parents=True, exist_ok=True)
    free_mb = int(subprocess.run(["free", "-m"], capture_output=True, text=True).stdout.split("\n")[1].split()[3])
    r = cluster.run_dir
    cluster.conf.write_text(MARKER + f"""ClusterName=localcluster
SlurmctldHost=localhost
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MinJobAge=300
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd.log
NodeName={cluster.node} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} RealMemory={int(free_mb * 0.9)} State=UNKNOWN
PartitionName={cluster.partition} Nodes={cluster.node} Default=YES MaxTime=INFINITE State=UP
""")
    SYSTEM_CONF.parent.mkdir(parents=True, exist_ok=True)
    if SYSTEM_CONF.exists() and not SYSTEM_CONF.read_text().startswith(MARKER):
        shutil.copy2(SYSTEM_CONF, cluster.run_dir / "slurm.conf.saved")
    shutil.copy2(cluster.conf, SYSTEM_CONF)


def start_cluster(run_dir: Path) -> Cluster:
    """Start munge (if needed), slurmctld and slurmd; return once the node is idle."""
    _require()
    cluster = Cluster(run_dir=run_dir, node=socket.gethostname().split(".")[0])
    try:
        _start_munge(cluster)
        _write_conf(cluster)
        env = cluster.env()
        for daemon, pid in (("slurmctld", "slurmctld.pid"), ("slurmd", "slurmd.pid")):
            proc = subprocess.run([f"/usr/sbin/{daemon}", "-c", "-f", str(cluster.conf)], env=env,
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                raise ClusterUnavailable(f"{daemon} failed to start: {proc.stderr.strip()}")
            cluster.pid_files.append(run_dir / pid)

        def idle() -> bool:
            out = subprocess.run(["sinfo", "-h", "-n", cluster.node, "-o", "%t"], env=env,
                                 capture_output=True, text=True).stdout.strip()
            return out == "idle"

        _wait(idle, "the SLURM node to become idle")
    except BaseException:
        stop_cluster(cluster)
        raise
    return cluster


def stop_cluster(cluster: Cluster) -> None:
    """Stop every daemon we started, by its pid file: TERM, wait, then KILL."""
    for pid_file in reversed(cluster.pid_files):
        try:
            pid = int(pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    cluster.pid_files.clear()
    saved = cluster.run_dir / "slurm.conf.saved"
    if saved.exists():
        shutil.copy2(saved, SYSTEM_CONF)
    elif SYSTEM_CONF.exists() and SYSTEM_CONF.read_text().startswith(MARKER):
        SYSTEM_CONF.unlink()

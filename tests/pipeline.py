"""Run the real pipeline in a throw-away copy of the repository.

Tests that need Snakemake or DVC copy the project's files (what git would
commit) to a temporary folder, merge tests/tiny_params.yaml (and any
overrides) into params.yaml, make it a git repository of its own, and run the
tools there. The developer's checkout is never touched.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from echocem.dag import load_pipeline, producer, stages_by_rule
from echocem.params import deep_merge

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def repo_files(root: Path = REPO) -> list[str]:
    """Files git would commit: tracked plus untracked-but-not-ignored, except the
    record of a run (dvc.lock, the .gitignore files DVC writes beside the outputs):
    a copy starts from no run."""
    def ls(*args: str) -> list[str]:
        out = subprocess.run(["git", "ls-files", *args, "-z"], cwd=root, check=True,
                             capture_output=True, text=True).stdout
        return [p for p in out.split("\0") if p]

    files = ls("--cached") + ls("--others", "--exclude-standard")
    record = {"dvc.lock"} | {p for p in files if Path(p).name == ".gitignore" and p != ".gitignore"}
    return sorted(p for p in set(files) - record if (root / p).is_file())


def tool_env(base: dict[str, str] | None = None, cwd: Path | None = None) -> dict[str, str]:
    """Environment for the tools: this interpreter's bin first, quiet DVC, one thread; in a
    copy of the project, its own package first (an edit there is what its stages run)."""
    env = dict(os.environ if base is None else base)
    if cwd is not None and (Path(cwd) / "src" / "echocem").is_dir():
        env["PYTHONPATH"] = os.pathsep.join([str(Path(cwd) / "src"), *filter(None, [env.get("PYTHONPATH")])])
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["DVC_NO_ANALYTICS"] = "1"
    env.setdefault("OMP_NUM_THREADS", "1")
    env.pop("ECHOCEM_THREADS", None)
    return env


def run(cmd: list[str], cwd: Path, check: bool = True, timeout: int = 1800,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=tool_env(env, cwd), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"command failed ({proc.returncode}): {' '.join(cmd)}\n--- stdout\n{proc.stdout[-6000:]}"
            f"\n--- stderr\n{proc.stderr[-6000:]}"
        )
    return proc


def git(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return run(["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid", *args], cwd)


def tiny_params(overrides: dict | None = None) -> dict:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params = deep_merge(params, yaml.safe_load((REPO / "tests" / "tiny_params.yaml").read_text()) or {})
    return deep_merge(params, overrides or {})


def write_params(dest: Path, params: dict) -> None:
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def make_pipeline_copy(dest: Path, overrides: dict | None = None, tiny: bool = True) -> Path:
    """Copy the project into `dest` (a fresh git repo with one commit) and return it.

    Outputs of the checkout's own runs are left behind: the copy starts from no
    results (and one still unrecorded by DVC would be committed to git there,
    which `dvc commit` then refuses).
    """
    dest.mkdir(parents=True, exist_ok=True)
    stages = load_pipeline(REPO)
    for rel in (f for f in repo_files() if producer(stages, f) is None):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, target)
    params = tiny_params(overrides) if tiny else deep_merge(
        yaml.safe_load((REPO / "params.yaml").read_text()), overrides or {})
    write_params(dest, params)
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "pipeline copy")
    return dest


def copy_run(template: Path, dest: Path) -> Path:
    """An independent copy of a finished pipeline copy (outputs, dvc.lock, DVC cache, git): a
    test that changes it leaves the others' alone, without paying for another whole run.

    Files are copied, not hard-linked, so the copy's cache is its own; DVC's state
    database is per path, so DVC rehashes the copy once (seconds for tiny outputs).
    """
    shutil.copytree(template, dest, symlinks=True)
    # the template's memo of DVC's answer is keyed on inodes: the copy asks DVC again
    shutil.rmtree(dest / ".dvc" / "tmp" / "echocem", ignore_errors=True)
    return dest


def snakemake(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run([str(BIN / "snakemake"), *args], cwd, check=check)


def dvc(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run([str(BIN / "dvc"), *args], cwd, check=check)


_JOB_ROW = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s+(\d+)\s*$")


def dry_run_stages(cwd: Path, *targets: str) -> set[str]:
    """Names of the DVC stages `snakemake -n` would run (the `all` target excluded)."""
    proc = snakemake(cwd, "-n", "--quiet", "rules", "--cores", "1", *targets)
    by_rule = stages_by_rule(load_pipeline(cwd))
    stages = set()
    for line in proc.stdout.splitlines():
        m = _JOB_ROW.match(line)
        if m and m.group(1) not in ("all", "total"):
            stages.add(by_rule[m.group(1)])
    return stages


def dvc_stale_stages(cwd: Path) -> set[str]:
    """Names of the stages `dvc status` reports as changed."""
    import json

    proc = dvc(cwd, "status", "--json")
    return set(json.loads(proc.stdout or "{}"))

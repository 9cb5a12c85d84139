"""The record never vouches for a stale output: after any run, whole or partial, killed
or not, `dvc status` and `snakemake -n` agree, and the audit of a submission tells the truth.

Each test works on one tiny pipeline copy (tests/pipeline.py) and leaves it as it
found it: fully run, nothing out of date.
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from echocem.dag import descendants_and_self, load_pipeline
from tests.pipeline import BIN, dry_run_stages, dvc, dvc_stale_stages, snakemake, tool_env

pytestmark = pytest.mark.slow

SUBMISSION = "submission/submission.csv"


@pytest.fixture(scope="module")
def root(tiny_copy) -> Path:
    return tiny_copy


def pipeline_stale(root: Path) -> set[str]:
    """What DVC reports out of date among the pipeline's stages."""
    return dvc_stale_stages(root) & set(load_pipeline(root))


def assert_tools_agree(root: Path) -> set[str]:
    """`snakemake -n` plans exactly what DVC reports out of date and everything downstream."""
    stale = pipeline_stale(root)
    planned = dry_run_stages(root)
    assert planned == descendants_and_self(load_pipeline(root), stale), (stale, planned)
    return stale


def audit_code(root: Path) -> int:
    import sys

    return subprocess.run([sys.executable, "-m", "echocem", "audit", SUBMISSION], cwd=root, env=tool_env(cwd=root),
                          capture_output=True, text=True).returncode


def assert_audit_truthful(root: Path, stale: set[str]) -> None:
    """The audit passes exactly when nothing the submission was built from is out of date."""
    if not (root / SUBMISSION).is_file():
        return
    stages = load_pipeline(root)
    chain = {s for s in stages if "submission" in descendants_and_self(stages, [s])}
    assert audit_code(root) == (1 if stale & chain else 0), f"stale {sorted(stale)}, chain {sorted(chain)}"


def edit_params(root: Path, dotted: str, delta: int = 1) -> None:
    path = root / "params.yaml"
    params = yaml.safe_load(path.read_text())
    node = params
    *parents, last = dotted.split(".")
    for part in parents:
        node = node[part]
    value = node[last] + delta
    node[last] = value if value >= 1 else node[last] + abs(delta)  # every key edited here must stay >= 1
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def start_snakemake(root: Path, *args: str) -> subprocess.Popen:
    """Snakemake in its own process group, so a kill -9 reaches every job it started.
    The previous run's logs go first: waiting on a log then means waiting on this run."""
    shutil.rmtree(root / "logs", ignore_errors=True)
    return subprocess.Popen([str(BIN / "snakemake"), "--cores", "2", *args], cwd=root, env=tool_env(cwd=root),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def wait_for(predicate, timeout: float = 300.0, what: str = "") -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def kill_group(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)


def training_started(root: Path, stage: str = "unet") -> bool:
    log = root / "logs" / f"{stage}.log"
    return log.is_file() and "epoch" in log.read_text(errors="replace")


def test_a_one_target_run_leaves_the_stages_downstream_out_of_date_in_both_tools(root):
    edit_params(root, "rf.n_estimators")
    assert assert_tools_agree(root) == {"rf_baseline", "report"}  # the report shows every params value
    snakemake(root, "--cores", "1", "models/rf.joblib")
    stale = assert_tools_agree(root)
    assert stale == {"evaluate", "report"}, "rf was rebuilt and recorded; what reads it is out of date"
    assert_audit_truthful(root, stale)
    snakemake(root, "--cores", "2")
    assert assert_tools_agree(root) == set()


def test_kill_9_mid_training_then_a_plain_rerun(root):
    before = (root / "models" / "unet.pt").read_bytes()
    edit_params(root, "unet.profiles.small.train.epochs")
    proc = start_snakemake(root)
    wait_for(lambda: training_started(root), what="the U-Net to train")
    kill_group(proc)

    stale = assert_tools_agree(root)
    assert "unet" in stale
    assert (root / "models" / "unet.pt").read_bytes() == before, \
        "the previous good model stays in place until the new one is ready"
    assert_audit_truthful(root, stale)

    snakemake(root, "--cores", "2")  # no --unlock, no --rerun-incomplete: a plain rerun resumes
    assert assert_tools_agree(root) == set()
    assert audit_code(root) == 0
    assert not list(root.glob(".dvc.lock.*.tmp")), "no unfinished copy of dvc.lock is left behind"


def test_snakemake_and_dvc_repro_at_once_one_refuses_nothing_corrupted(root):
    edit_params(root, "unet.profiles.small.train.epochs", -1)  # unet and what follows must run again
    proc = start_snakemake(root)
    wait_for(lambda: training_started(root), what="the Snakemake run to start its jobs")
    repro = dvc(root, "repro", check=False)
    assert repro.returncode != 0
    assert "Unable to acquire lock" in repro.stdout + repro.stderr
    second = snakemake(root, "--cores", "1", check=False)
    assert second.returncode != 0 and "this checkout is busy" in second.stdout + second.stderr
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-4000:]
    assert assert_tools_agree(root) == set()
    assert audit_code(root) == 0

    # and the other way round: while `dvc repro` runs, Snakemake is refused
    edit_params(root, "rf.n_estimators")
    repro = subprocess.Popen([str(BIN / "dvc"), "repro"], cwd=root, env=tool_env(cwd=root), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, start_new_session=True)
    wait_for(lambda: (root / ".dvc" / "tmp" / "rwlock").is_file()
             and "rf.joblib" in (root / ".dvc" / "tmp" / "rwlock").read_text(), timeout=120,
             what="dvc repro to run rf_baseline")
    refused = snakemake(root, "--cores", "1", check=False)
    assert refused.returncode != 0 and "this checkout is busy" in refused.stdout + refused.stderr
    out, _ = repro.communicate(timeout=900)
    assert repro.returncode == 0, out[-4000:]
    assert assert_tools_agree(root) == set()
    assert audit_code(root) == 0


# --- randomised sequences ------------------------------------------------------------

PARAM_KEYS = ("rf.n_estimators", "submission.batch_size", "generative.banana.small.steps", "rules.morph_size",
              "unet_oof.epochs.small")
CODE_FILES = ("stages/rf_baseline.py", "stages/evaluate.py", "src/echocem/seg/rules.py", "stages/generative.py",
              "src/echocem/io.py")
SEQUENCES, STEPS = 2, 5


def _step(root: Path, kind: str, rng: random.Random, stages: dict) -> str:
    if kind == "params":
        key = rng.choice(PARAM_KEYS)
        edit_params(root, key, rng.choice([1, -1]) * (2 if key == "rules.morph_size" else 1))
        return f"params {key}"
    if kind == "code":
        path = root / rng.choice(CODE_FILES)
        path.write_text(path.read_text() + f"\n# edit {rng.random()}\n")
        return f"code {path.relative_to(root)}"
    if kind == "target":
        stage = stages[rng.choice(sorted(stages))]
        snakemake(root, "--cores", "2", stage.outs[0])
        return f"target {stage.outs[0]}"
    if kind == "full":
        snakemake(root, "--cores", "2")
        return "full run"
    delay = rng.uniform(0.5, 20.0)
    proc = start_snakemake(root)
    time.sleep(delay)
    if proc.poll() is None:
        kill_group(proc)
    else:
        proc.communicate()
    return f"kill -9 after {delay:.1f} s"


@pytest.mark.parametrize("sequence", range(SEQUENCES))
def test_random_sequences_keep_both_tools_in_agreement_and_the_audit_truthful(root, sequence):
    rng = random.Random(1000 + sequence)
    stages = load_pipeline(root)
    done = []
    for _ in range(STEPS):
        kind = rng.choice(["params", "code", "target", "full", "kill"])
        done.append(_step(root, kind, rng, stages))
        stale = assert_tools_agree(root)
        assert_audit_truthful(root, stale)
    print(f"sequence {sequence}: {' | '.join(done)}")
    snakemake(root, "--cores", "2")
    assert assert_tools_agree(root) == set()

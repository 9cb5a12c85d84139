"""Wall time of a no-op rerun and of a dry run on the default DAG.

Run after a complete pipeline run (`make run`), from the repository root:

    .venv/bin/python benchmarks/noop_rerun.py --repeat 5

Goal (issue 2): a no-op `snakemake --cores 2` within 3 s on the 2-core machine.
Also times `snakemake -n`, `dvc status` and a no-op `dvc repro` for comparison.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def timed(cmd: list[str], cwd: Path) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"error: {' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return elapsed, proc.stdout + proc.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, default=Path("."))
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    _, out = timed([str(BIN / "snakemake"), "-n", "--quiet", "rules", "--cores", "2"], args.repo)
    if "Nothing to be done" not in out and "total" in out:
        sys.exit("error: the pipeline is not up to date; run `make run` first\n" + out[-2000:])

    commands = {
        "snakemake --cores 2 (no-op rerun)": [str(BIN / "snakemake"), "--cores", "2", "--quiet"],
        "snakemake -n (dry run)": [str(BIN / "snakemake"), "-n", "--quiet"],
        "dvc status": [str(BIN / "dvc"), "status", "-q"],
        "dvc repro (no-op)": [str(BIN / "dvc"), "repro", "-q"],
    }
    rows = []
    for name, cmd in commands.items():
        times = [timed(cmd, args.repo)[0] for _ in range(args.repeat)]
        rows.append((name, statistics.median(times), min(times), max(times)))
    print(f"{'command':<36}{'median s':>10}{'min s':>8}{'max s':>8}")
    for name, med, lo, hi in rows:
        print(f"{name:<36}{med:>10.2f}{lo:>8.2f}{hi:>8.2f}")
    noop = rows[0][1]
    print(f"\nno-op rerun goal 3.0 s: {'met' if noop <= 3.0 else 'MISSED'} ({noop:.2f} s, "
          f"{noop / rows[1][1]:.2f}x the dry run)")


if __name__ == "__main__":
    main()

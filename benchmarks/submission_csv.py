"""Wall time of writing, validating and reading a challenge submission CSV.

Run from the repository root:

    .venv/bin/python benchmarks/submission_csv.py --patches 1000

Random predictions, 30 % of the patches 160 wide (as wells 3-4 of the real data);
the file is about 92 MB for 1,000 patches. Goal: each step a few seconds at most
for ~1,000 rows on one core (no Python loop over the 43,520 cells of a row).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from echocem.seg.submission import read_submission, validate_submission, write_submission


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patches", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    n = args.patches
    widths = np.where(rng.random(n) < 0.3, 160, 272)
    preds = rng.integers(0, 3, (n, 160, 272)).astype(np.int8)
    preds[np.broadcast_to(np.arange(272)[None, None, :] >= widths[:, None, None], preds.shape)] = -1
    ids = [f"well_7_section_{i // 50}_patch_{i % 50}" for i in range(n)]

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "submission.csv"
        t0 = time.perf_counter()
        write_submission(path, ids, preds, widths)
        t1 = time.perf_counter()
        problems = validate_submission(path, ids, widths)
        t2 = time.perf_counter()
        _, back, _ = read_submission(path)
        t3 = time.perf_counter()
        size_mb = path.stat().st_size / 1e6
    assert not problems and np.array_equal(back, preds), "round trip failed"
    print(f"{n} patches, {size_mb:.1f} MB: write {t1 - t0:.2f} s, validate {t2 - t1:.2f} s, read {t3 - t2:.2f} s")


if __name__ == "__main__":
    main()

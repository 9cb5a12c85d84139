"""How fast ingestion reads the full labelled set: 4,410 patches of 160 x 272 plus their label CSV.

Writes a real-layout folder into a temporary directory (random int16 images and masks with
a 160-wide well, rows unsorted), then times `echocem.data.ingest.ingest` end to end and the
label CSV parse alone. Prints patches/s and the CSV parse seconds.

    .venv/bin/python benchmarks/ingest_speed.py [--patches 4410]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from echocem.data.challenge_csv import read_csv
from echocem.data.ingest import ingest
from echocem.data.layout import HEIGHT, LABEL_PREFIX, stem, write_raw_layout


def build(root: Path, n: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    train, labels = {}, {}
    for i in range(n):
        well, section, patch = 1 + i % 6, 1 + (i // 6) % 18, i // 108
        width = 160 if well in (3, 4) else 272
        name = stem(well, section, patch)
        train[name] = rng.integers(-300, 300, (HEIGHT, width), dtype=np.int16)
        labels[name] = rng.integers(0, 3, (HEIGHT, width), dtype=np.int8)
    order = [list(labels)[i] for i in rng.permutation(n)]
    suffixes = {"train": "uDRk9z9", "test": "xNbnvIa", "unlabeled": "mtkxUlo", "labels": "T9NrBYo"}
    # one test patch: ingestion refuses an empty test split
    test = {stem(7, 1, 0): rng.integers(-300, 300, (HEIGHT, 272), dtype=np.int16)}
    write_raw_layout(root, {"train": train, "test": test, "unlabeled": {}}, labels, suffixes, label_order=order)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--patches", type=int, default=4410)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        build(root, args.patches)
        t1 = time.perf_counter()
        csv = next(root.glob(f"{LABEL_PREFIX}*.csv"))
        read_csv(csv)
        t2 = time.perf_counter()
        splits = ingest(root)
        t3 = time.perf_counter()
        size_mb = csv.stat().st_size / 1e6
    n = len(splits["train"]["ids"])
    print(f"generated {n} patches + CSV ({size_mb:.0f} MB) in {t1 - t0:.1f} s")
    print(f"label CSV parse: {t2 - t1:.2f} s")
    print(f"ingest (images + CSV + checks): {t3 - t2:.2f} s = {n / (t3 - t2):.0f} patches/s")


if __name__ == "__main__":
    main()

"""Stage simulate: write the embedded synthetic dataset in the real raw layout.

Always writes the folder given by --out (dvc.yaml: data/raw/synthetic), whatever
data.source says: it never touches a real download. The folder is written
atomically (complete or absent).
"""
from __future__ import annotations

import argparse

from echocem.data.layout import write_raw_layout
from echocem.data.simulate import random_suffixes, shuffled_label_order, simulate_dataset
from echocem.io import atomic_path
from echocem.runtime import stage_main, start_stage

STAGE = "simulate"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--out", required=True, help="output: raw folder (X_train_*/, X_test_*/, X_unlabeled_*/, Y_train_*.csv)")
    return p.parse_args()


@stage_main
def main() -> None:
    args = parse_args()
    params = start_stage(args.params, STAGE)
    seed = params["seed"]
    data = simulate_dataset(params["simulate"], seed)
    with atomic_path(args.out, is_dir=True) as tmp:
        tmp.mkdir(parents=True, exist_ok=True)
        write_raw_layout(tmp, data.patches, data.labels, random_suffixes(seed),
                         label_order=shuffled_label_order(list(data.labels), seed))


if __name__ == "__main__":
    main()

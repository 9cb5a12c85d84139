"""Stage ingest: read a raw folder in the challenge layout into data/ingested/{train,test,unlabeled}.npz.

Everything is read and validated before anything is written; the output folder is
written atomically, so a bad input leaves no data/ingested behind. Also writes the
data card (counts per well and split, class frequencies, value statistics).
"""
from __future__ import annotations

import argparse

from echocem.data.ingest import data_card, ingest
from echocem.io import atomic_path, save_json, save_npz
from echocem.runtime import stage_main, start_stage

STAGE = "ingest"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--raw", required=True, help="raw folder in the challenge layout (params data.raw_dir)")
    p.add_argument("--out", required=True, help="output folder: train.npz, test.npz, unlabeled.npz")
    p.add_argument("--card", required=True, help="output: data card (.json, a DVC metric)")
    return p.parse_args()


@stage_main
def main() -> None:
    args = parse_args()
    start_stage(args.params, STAGE)
    splits = ingest(args.raw)
    card = data_card(splits)
    with atomic_path(args.out, is_dir=True) as tmp:
        tmp.mkdir(parents=True, exist_ok=True)
        for split, arrays in splits.items():
            save_npz(tmp / f"{split}.npz", **arrays)
    save_json(args.card, card)


if __name__ == "__main__":
    main()

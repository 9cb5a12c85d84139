"""What a cheaper setting costs in quality: two runs' validation predictions, paired patch by patch.

A speed change (fewer epochs, a smaller judge) is only worth it if the quality it costs is
known. This compares the ladder predictions (stage ladder_predictions, data/predictions/
ladder_val.npz) of two runs on the same validation patches: each entry's mean IoU in both
runs and the paired difference (new - old) with its bootstrap interval, resampled within
wells, whole sections at a time where the ingested split has them (echocem.stats.
paired_difference: a section's patches err together). A difference whose interval holds
zero is no difference. One seed per run: a difference also holds the seed-to-seed spread of training.

From the repository root, after saving the old run's file (e.g. cp data/predictions/
ladder_val.npz /tmp/old_ladder.npz) and running the pipeline with the new setting:

    .venv/bin/python benchmarks/budget_quality.py /tmp/old_ladder.npz data/predictions/ladder_val.npz
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from echocem.io import EchoCemError, load_npz
from echocem.seg.intervals import section_codes
from echocem.seg.ladder import align_predictions
from echocem.seg.metric import patch_scores
from echocem.stats import bootstrap_mean, paired_difference


def compare(old: dict, new: dict, truth: dict, n_boot: int, level: float, seed: int) -> pd.DataFrame:
    """One row per prediction entry both files hold: mean IoU of each run and the paired gain."""
    if sorted(map(str, old["ids"])) != sorted(map(str, new["ids"])):
        raise EchoCemError("the two files hold different validation patches: they cannot be paired")
    ids = [str(i) for i in new["ids"]]
    masks = align_predictions(ids, truth["ids"], truth["masks"], "the ingested train split")
    widths = align_predictions(ids, truth["ids"], truth["widths"], "the ingested train split")
    wells = np.asarray(new["well"])
    sections = (section_codes(wells, align_predictions(ids, truth["ids"], truth["section"], "the ingested train split"))
                if "section" in truth else None)
    keys = [k for k in new if k not in ("ids", "well") and k in old]
    rows = []
    for key in keys:
        a = patch_scores(masks, align_predictions(ids, old["ids"], old[key], f"old {key}"), widths)
        b = patch_scores(masks, new[key], widths)
        d = paired_difference(b, a, wells, clusters=sections, n_boot=n_boot, level=level, seed=seed)
        new_ci = bootstrap_mean(b, wells, clusters=sections, n_boot=n_boot, level=level, seed=seed)
        rows.append({"entry": key, "old": float(a.mean()), "new": float(b.mean()),
                     "new_low": new_ci.low, "new_high": new_ci.high,
                     "gain": d.estimate, "gain_low": d.low, "gain_high": d.high,
                     "verdict": "no difference" if d.low <= 0 <= d.high else ("gain" if d.low > 0 else "loss")})
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("old", type=Path, help="the reference run's ladder_val.npz")
    ap.add_argument("new", type=Path, help="the new run's ladder_val.npz")
    ap.add_argument("--ingested", type=Path, default=Path("data/ingested"), help="folder holding train.npz")
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--level", type=float, default=0.95)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    try:
        new = load_npz(args.new)
        table = compare(load_npz(args.old), new, load_npz(args.ingested / "train.npz"), args.n_boot, args.level,
                        args.seed)
    except EchoCemError as exc:
        raise SystemExit(f"error: {exc}")
    print(f"{len(new['ids'])} validation patches, {args.n_boot} bootstrap resamples of whole sections within wells, "
          f"level {args.level}")
    with pd.option_context("display.width", 160, "display.float_format", "{:+.4f}".format):
        print(table.to_string(index=False))


if __name__ == "__main__":
    main()

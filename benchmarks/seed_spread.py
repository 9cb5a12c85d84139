"""How far the U-Net's validation IoU and the ladder's first gains move with the training seed.

The ladder's intervals (stage evaluate) resample the validation patches of one trained
network: they hold the patches' spread, not the spread between training runs. This
trains the main U-Net again with other seeds (stage unet's own script, params.yaml
with only `seed` changed; the data, splits and generated pairs of the current run),
predicts the validation patches patch by patch, as whole sections and as sections
with depth-flip TTA, and reports for each network the three IoUs and the two paired
gains (section context, TTA) with their bootstrap intervals; then the mean, std and
range over the networks. The pipeline's own U-Net (models/unet.pt) is one of them.

From the repository root, after a pipeline run (one training at a time per core):

    .venv/bin/python benchmarks/seed_spread.py --seeds 1 2 3 --jobs 2 --out /tmp/seed_spread
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from echocem.io import EchoCemError
from echocem.params import active_profile, load_params
from echocem.seg.context import Inference, predict_probs, take
from echocem.seg.inputs import load_labelled_inputs
from echocem.seg.intervals import section_codes
from echocem.seg.metric import patch_scores
from echocem.seg.unet import labels_from_proba, load_model
from echocem.stats import bootstrap_mean, paired_difference

REPO = Path(__file__).resolve().parents[1]
ENTRIES = ("unet", "sections", "tta")
GAINS = {"sections": ("sections", "unet"), "tta": ("tta", "sections")}


def unet_command(params: Path, out: Path) -> list[str]:
    """Stage unet's command (as dvc.yaml runs it) writing into `out`."""
    return [sys.executable, str(REPO / "stages" / "unet.py"), "--params", str(params),
            "--ingested", "data/ingested", "--prepared", "data/prepared", "--model", str(out / "unet.pt"),
            "--pred", str(out / "unet_val.npz"), "--metrics", str(out / "unet.json"), "--plots", str(out / "plots"),
            "--generated", "data/generated/patches.npz", "--checkpoints", str(out / "checkpoints")]


def train_seeds(seeds: list[int], out: Path, jobs: int) -> dict[int, Path]:
    """{seed: model file}: stage unet's script once per seed, `jobs` at a time; a model already
    in `out` is kept (rerunning the benchmark only trains what is missing)."""
    base = yaml.safe_load((REPO / "params.yaml").read_text())
    todo, models, running = [], {}, []
    for s in seeds:
        folder = out / f"seed_{s}"
        folder.mkdir(parents=True, exist_ok=True)
        models[s] = folder / "unet.pt"
        if not models[s].exists():
            params = folder / "params.yaml"
            params.write_text(yaml.safe_dump({**base, "seed": int(s)}, sort_keys=False))
            load_params(params)  # a bad value stops here, before any training
            todo.append((s, folder, params))
    env = {**os.environ, "ECHOCEM_THREADS": "1"}
    while todo or running:
        while todo and len(running) < jobs:
            s, folder, params = todo.pop(0)
            log = open(folder / "unet.log", "w")
            print(f"seed {s}: training (log {folder / 'unet.log'})", file=sys.stderr)
            running.append((s, subprocess.Popen(unet_command(params, folder), cwd=REPO, env=env, stdout=log,
                                                stderr=subprocess.STDOUT), log, time.perf_counter()))
        time.sleep(2)
        for item in list(running):
            s, proc, log, t0 = item
            if proc.poll() is None:
                continue
            log.close()
            running.remove(item)
            if proc.returncode != 0:
                raise EchoCemError(f"seed {s}: stage unet failed (exit {proc.returncode}); see {log.name}")
            print(f"seed {s}: trained in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return models


def network_scores(name: str, model_path: Path, val: dict, spec: dict, profile: dict,
                   device: str) -> dict[str, np.ndarray]:
    """{entry: per-patch challenge scores} of one network on the validation patches."""
    model = load_model(model_path)[0]
    batch = int(profile["train"]["eval_batch_size"])
    scores = {}
    for entry, sections, tta in (("unet", False, False), ("sections", True, False), ("tta", True, True)):
        how = Inference.from_params(profile["context"], batch, sections=sections, tta=tta)
        probs = predict_probs([model], val, spec, device, how, desc=f"{name}: {entry}")
        scores[entry] = patch_scores(val["masks"], labels_from_proba(probs, val["widths"]), val["widths"])
    return scores


def seed_table(per_network: dict[str, dict[str, np.ndarray]], wells: np.ndarray, sections: np.ndarray | None,
               n_boot: int, level: float, seed: int) -> pd.DataFrame:
    """One row per network: each entry's mean IoU with its interval, each gain with its interval
    (whole sections resampled within wells where `sections` is given, as stage evaluate does)."""
    rows = []
    opts = {"clusters": sections, "n_boot": n_boot, "level": level, "seed": seed}
    for name, scores in per_network.items():
        row = {"network": name}
        for entry in ENTRIES:
            ci = bootstrap_mean(scores[entry], wells, **opts)
            row.update({entry: ci.estimate, f"{entry}_low": ci.low, f"{entry}_high": ci.high})
        for gain, (a, b) in GAINS.items():
            d = paired_difference(scores[a], scores[b], wells, **opts)
            row.update({f"gain_{gain}": d.estimate, f"gain_{gain}_low": d.low, f"gain_{gain}_high": d.high})
        rows.append(row)
    return pd.DataFrame(rows)


def spread(table: pd.DataFrame) -> pd.DataFrame:
    """Mean, std (ddof 1), min and max over the networks of every entry and gain."""
    cols = [*ENTRIES, *(f"gain_{g}" for g in GAINS)]
    return table[cols].agg(["mean", "std", "min", "max"]).T.assign(n_networks=len(table))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", required=True, help="training seeds beside params seed")
    ap.add_argument("--jobs", type=int, default=1, help="trainings at once (one thread each)")
    ap.add_argument("--out", type=Path, required=True, help="work folder: one sub-folder per seed, the tables")
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--level", type=float, default=0.95)
    args = ap.parse_args()
    os.chdir(REPO)
    try:
        params = load_params("params.yaml")
        if int(params["seed"]) in args.seeds:
            raise EchoCemError(f"--seeds: {params['seed']} is params seed, the pipeline's own U-Net: pick others")
        models = {f"params seed {params['seed']} (models/unet.pt)": Path("models/unet.pt")}
        models.update({f"seed {s}": p for s, p in train_seeds(args.seeds, args.out, args.jobs).items()})
        inputs = load_labelled_inputs("data/ingested", "data/prepared")
        val = take(inputs.data, inputs.val_idx)
        profile = active_profile(params["unet"], "unet")
        per_network = {name: network_scores(name, p, val, inputs.spec, profile, "cpu")
                       for name, p in models.items()}
    except EchoCemError as exc:
        raise SystemExit(f"error: {exc}")
    table = seed_table(per_network, val["well"], section_codes(val["well"], val["section"]), args.n_boot,
                       args.level, int(params["seed"]))
    summary = spread(table)
    table.to_csv(args.out / "seed_spread.csv", index=False)
    summary.to_csv(args.out / "seed_spread_summary.csv")
    print(f"{len(val['ids'])} validation patches, {args.n_boot} bootstrap resamples of whole sections within wells, "
          f"level {args.level}")
    with pd.option_context("display.width", 200, "display.float_format", "{:+.4f}".format):
        print(table.to_string(index=False))
        print(summary.to_string())


if __name__ == "__main__":
    main()

"""How far the generator's judgement moves with the judge's own random draws (issue 12).

Stage gen_patches judges its generator once: one draw of held-out patches, of
real training patches (the floor) and of generated patches for the floor's
masks, 32 patches each by default. Its checks (Sinkhorn distance within 2 x
the real-vs-real floor, faithfulness at least 0.9 x the U-Net's IoU on real
held-out patches) compare point estimates of that one draw. This script judges
the trained generator again with other judge seeds (every draw changes: the
reference, the floors and the sampled images) and reports, per sampling
setting, the mean, std and range of each ratio over the seeds and on how many
seeds each check holds. It can also try other sampling settings (`--steps`,
`--guidance`) on the same generator, without training it again.

`--train-seeds` measures the other source of spread, the generator's own
training: the generator is trained again, as the stage trains it (the params'
size, the training wells' pairs, the unlabelled and test images), once per
training seed, and each is judged with every judge seed. The params' seed
reproduces the stage's generator. The summary is then over every (training
seed, judge seed) pair, and a second table gives each training seed's means.

From the repository root, after a pipeline run:

    .venv/bin/python benchmarks/judge_spread.py --seeds 0 1 2 3 4
    .venv/bin/python benchmarks/judge_spread.py --seeds 0 1 2 --steps 6 12 --guidance 2 3 --out /tmp/judge.csv
    .venv/bin/python benchmarks/judge_spread.py --seeds 0 1 --train-seeds 2025 1 2 3
"""
from __future__ import annotations

import argparse
import itertools
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

RATIOS = ("amplitude", "encoder", "combined")


def verdict_row(verdict: dict, name: str) -> dict:
    """The ratios one judgement gives for the generated set `name`: each Sinkhorn distance over
    the floor's (real training patches), and the faithfulness ratio."""
    dist, floor = verdict["sinkhorn"][name], verdict["sinkhorn"]["real (training wells)"]
    row = {f"{b} / floor": float(dist[b] / floor[b]) for b in RATIOS if b in dist}
    row["faithfulness ratio"] = verdict["faithfulness_ratio"][name]
    return row


def ratio_columns(rows: pd.DataFrame) -> list[str]:
    """The columns of `rows` that hold a judgement's ratios (verdict_row's)."""
    return [c for c in rows.columns if c.endswith(" / floor") or c == "faithfulness ratio"]


def summarise(rows: pd.DataFrame, floor_factor: float = 2.0, faithfulness_factor: float = 0.9) -> pd.DataFrame:
    """Per sampling setting and ratio: mean, std (ddof 1), min, max over the judge seeds, and
    on how many seeds the issue's check holds (a distance ratio at most `floor_factor`, the
    faithfulness ratio at least `faithfulness_factor`)."""
    ratio_cols = ratio_columns(rows)
    ids = [c for c in ("steps", "guidance", "train seed", "seed") if c in rows.columns]
    long = rows.melt(id_vars=ids, value_vars=ratio_cols, var_name="ratio")
    long["check holds"] = np.where(long["ratio"] == "faithfulness ratio", long["value"] >= faithfulness_factor,
                                   long["value"] <= floor_factor)
    out = long.groupby(["steps", "guidance", "ratio"], sort=True).agg(
        mean=("value", "mean"), std=("value", "std"), min=("value", "min"), max=("value", "max"),
        judgements=("value", "size"), holds=("check holds", "sum"))
    out["holds"] = out["holds"].astype(int)
    return out.reset_index()


def per_training_seed(rows: pd.DataFrame) -> pd.DataFrame:
    """Each ratio's mean over the judge seeds, one row per (sampling setting, training seed)."""
    return rows.groupby(["steps", "guidance", "train seed"], sort=False)[ratio_columns(rows)].mean().reset_index()


def retrained_generator(params: dict, ingested: Path, inputs, seed: int, checkpoints: Path):
    """The stage's generator trained again with `seed` in place of the params' (the stage's
    data, size and task name, so the params' seed gives the stage's generator)."""
    from echocem.patchgen.workflow import train_generator, training_pairs, unlabelled_images

    section = params["gen_patches"]
    gen, _ = train_generator(training_pairs(inputs.data, inputs.train_idx), unlabelled_images(ingested), inputs.spec,
                             section["sizes"][section["size"]], seed, "cpu", checkpoints, "gen_patches")
    return gen


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--generator", default="models/gen_patches.pt")
    p.add_argument("--unet", default="models/folds/fold_0.pt", help="the judge U-Net (as dvc.yaml gives it)")
    p.add_argument("--ingested", default="data/ingested")
    p.add_argument("--prepared", default="data/prepared")
    p.add_argument("--pairs", default="data/generated/patches.npz")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="judge seeds")
    p.add_argument("--train-seeds", type=int, nargs="+", default=None,
                   help="train the generator again with each of these seeds (default: judge --generator only)")
    p.add_argument("--steps", type=int, nargs="+", default=None, help="sampling steps (default: the params')")
    p.add_argument("--guidance", type=float, nargs="+", default=None, help="guidance (default: the params')")
    p.add_argument("--out", type=Path, default=None, help="optional CSV of every judgement")
    args = p.parse_args()

    from echocem.io import load_npz
    from echocem.params import load_params
    from echocem.patchgen import unet_adapter
    from echocem.patchgen.evaluation import SAME, judge_generator
    from echocem.patchgen.generate import load_generator
    from echocem.seg.inputs import load_labelled_inputs

    torch.set_num_threads(1)
    params = load_params(args.params)
    section = params["gen_patches"]
    size = section["sizes"][section["size"]]
    inputs = load_labelled_inputs(args.ingested, args.prepared)
    unet, _ = unet_adapter.load_segmenter(args.unet)
    pairs = load_npz(args.pairs)  # the stage's proposals: the judge needs them, the ratios below do not
    steps = args.steps or [int(size["sampling"]["steps"])]
    guidance = args.guidance or [float(size["sampling"]["guidance"])]

    rows = []
    with tempfile.TemporaryDirectory(prefix="judge_spread_") as scratch:
        for train_seed in args.train_seeds or ["stage"]:
            gen = load_generator(args.generator) if train_seed == "stage" else \
                retrained_generator(params, Path(args.ingested), inputs, int(train_seed), Path(scratch))
            for (n_steps, g), seed in itertools.product(itertools.product(steps, guidance), args.seeds):
                sampling = {**size["sampling"], "steps": n_steps, "guidance": g}
                verdict, _ = judge_generator(gen, inputs.data, inputs.train_idx, inputs.select_idx, pairs,
                                             section["judge"], sampling, inputs.spec, unet, seed, "cpu")
                rows.append({"steps": n_steps, "guidance": g, "train seed": train_seed, "seed": seed,
                             **verdict_row(verdict, SAME)})
                print(f"steps {n_steps}, guidance {g:g}, training seed {train_seed}, judge seed {seed}: "
                      + ", ".join(f"{k} {v:.3f}" for k, v in rows[-1].items()
                                  if k not in ("steps", "guidance", "train seed", "seed")), flush=True)
    table = pd.DataFrame(rows)
    if args.out:
        table.to_csv(args.out, index=False)
    fmt = {"index": False, "float_format": lambda v: f"{v:.3f}"}
    trained = f"{len(args.train_seeds)} training seeds x " if args.train_seeds else ""
    print(f"\n'generated: same masks', {trained}{len(args.seeds)} judge seeds, "
          f"{int(section['judge']['max_patches'])} patches a set (the stage uses params seed {int(params['seed'])}):")
    print(summarise(table).to_string(**fmt))
    if args.train_seeds:
        print("\nMeans over the judge seeds, per training seed:")
        print(per_training_seed(table).to_string(**fmt))


if __name__ == "__main__":
    main()

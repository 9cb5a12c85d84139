"""Stages gen_<task>: train monotone gradient networks on one generative task.

Tasks: gradient | gaussian | banana | digits | color (echocem.generative.tasks).
Writes a flat metrics JSON (MGNs and baselines side by side) and PNG figures into
the --figures directory (replaced atomically as a whole).
"""
from __future__ import annotations

import argparse

from echocem.io import EchoCemError, atomic_path, save_figure, save_json
from echocem.runtime import resolve_device, stage_main, start_stage


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--task", required=True, help="gradient | gaussian | banana | digits | color")
    p.add_argument("--metrics", required=True, help="output: metrics (.json)")
    p.add_argument("--figures", required=True, help="output: folder of PNG figures")
    return p.parse_args()


@stage_main
def main() -> None:
    args = parse_args()
    import torch  # noqa: F401  (imported before seeding so torch's generator is seeded too)

    from echocem.generative.tasks import TASKS

    if args.task not in TASKS:
        raise EchoCemError(f"--task {args.task!r}: expected one of {', '.join(TASKS)}")
    params = start_stage(args.params, f"gen_{args.task}")
    gen = params["generative"]
    common = gen["common"]
    cfg = gen[args.task][common["profile"]]
    device = resolve_device(common["device"])

    metrics, figures = TASKS[args.task](cfg, common, params["seed"], device)
    metrics = {"task": args.task, "profile": common["profile"], "device": device, "dtype": common["dtype"],
               **metrics}
    with atomic_path(args.figures, is_dir=True) as folder:
        folder.mkdir(parents=True, exist_ok=True)
        for stem, fig in sorted(figures.items()):
            save_figure(folder / f"{stem}.png", fig)
    save_json(args.metrics, metrics)
    print(f"gen_{args.task}: " + ", ".join(f"{k}={v}" for k, v in metrics.items()
                                          if isinstance(v, float) and ("sinkhorn" in k or "mae" in k or "uvp" in k)))


if __name__ == "__main__":
    main()

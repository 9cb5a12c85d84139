"""Stage gen_patches: a mask-conditioned generator of ultrasonic patches, its generated
pairs, and its judgement against the held-out wells.

Trains the generator (echocem.patchgen) on the training wells' (image, mask)
pairs and on the unlabelled and test images without masks; the validation
wells' images never reach it. Writes the model file, `n_pairs` generated
pairs for mask proposals (data/generated contract: images int16 raw, masks
int8 with -1 padding, widths, source_index/source_id and the modifications),
the metrics (Sinkhorn divergences to the held-out wells beside the
real-vs-real floor and the naive baselines; faithfulness IoU of the first
U-Net beside its IoU on real held-out patches; the issue's checks) and a
folder of figures. Checkpoints go to checkpoints/gen_patches/<fingerprint>/
(not an output): an interrupted run resumes from its last finished epoch; the
folder is removed once the outputs are written.

--unet must be a U-Net trained on real pairs only (the faithfulness judge).
"""
from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from echocem.io import EchoCemError, atomic_path, save_figure, save_json, save_npz
from echocem.runtime import resolve_device, stage_main, start_stage

STAGE = "gen_patches"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--ingested", required=True, help="folder holding train.npz, test.npz, unlabeled.npz")
    p.add_argument("--prepared", required=True, help="folder holding normalization.json and splits.json")
    p.add_argument("--unet", required=True, help="first U-Net (.pt) trained on real pairs: the judge")
    p.add_argument("--model", required=True, help="output: the generator (.pt)")
    p.add_argument("--generated", required=True, help="output: generated pairs (.npz)")
    p.add_argument("--metrics", required=True, help="output: judgement of the generator (.json)")
    p.add_argument("--figures", required=True, help="output folder: image grids, distances, loss curve (PNG)")
    p.add_argument("--checkpoints", default="checkpoints", help="scratch folder for resumable checkpoints")
    return p.parse_args()


@stage_main
def main() -> None:
    args = parse_args()
    import torch  # noqa: F401  (imported before seeding so torch's generator is seeded too)

    params = start_stage(args.params, STAGE)

    from echocem.patchgen import figures, judge, unet_adapter
    from echocem.patchgen.evaluation import PROPOSED, SAME, judge_generator
    from echocem.patchgen.generate import save_generator
    from echocem.patchgen.masks import observed_ranges, ranges_dict
    from echocem.patchgen.workflow import (UNLABELLED_SPLITS, proposal_pairs, train_generator, training_pairs,
                                           unlabelled_images)
    from echocem.seg.inputs import load_labelled_inputs

    seed = int(params["seed"])
    device = resolve_device(params["execution"]["device"])
    section = params[STAGE]
    size = section["sizes"][section["size"]]
    ingested = Path(args.ingested)
    inputs = load_labelled_inputs(ingested, args.prepared)
    data, spec, splits = inputs.data, inputs.spec, inputs.splits
    unl = unlabelled_images(ingested)
    tr, va = inputs.train_idx, inputs.select_idx  # the held-out patches: the selection sections (params preprocess)
    if len(tr) < 2 or len(va) < 2:
        raise EchoCemError(f"{ingested / 'train.npz'}: gen_patches needs at least 2 patches of the training wells "
                           f"{splits['train_wells']} and of the selection patches of the validation wells "
                           f"{splits['val_wells']}")
    # the judge first: a wrong file must stop the stage before the long training
    unet, unet_meta = unet_adapter.load_segmenter(args.unet)
    leak = sorted(set(unet_meta.get("train_wells", [])) & set(splits["val_wells"]))
    if leak:
        raise EchoCemError(f"{args.unet}: the judge U-Net was trained on validation wells {leak}")
    train = training_pairs(data, tr)

    t0 = time.perf_counter()
    gen, run = train_generator(train, unl, spec, size, seed, device, Path(args.checkpoints) / STAGE, STAGE,
                               meta={"train_wells": [int(w) for w in splits["train_wells"]],
                                     "unlabelled_splits": list(UNLABELLED_SPLITS), "size": section["size"]})
    t_train = time.perf_counter() - t0
    ranges = observed_ranges(train["masks"])
    t0 = time.perf_counter()
    pairs = proposal_pairs(gen, train, int(size["n_pairs"]), section["proposals"], size["sampling"], seed, device,
                           STAGE, ranges)
    t_pairs = time.perf_counter() - t0

    verdict, shown = judge_generator(gen, data, tr, va, pairs, section["judge"], size["sampling"], spec, unet,
                                     seed, device)
    same, predictions = shown["same"], shown["predictions"]

    metrics = {
        **verdict,
        "size": section["size"], "device": device, "seed": seed,
        "train_wells": [int(w) for w in splits["train_wells"]], "val_wells": [int(w) for w in splits["val_wells"]],
        "generator": {**gen.meta, "config": gen.config, "data_scale": gen.data_scale, "prediction": gen.prediction,
                      "contrast_rows": gen.contrast.rows if gen.contrast is not None else 0.0,
                      "parameters": int(sum(p.numel() for p in gen.net.parameters())),
                      "sampling": dict(size["sampling"])},
        "mask_ranges": ranges_dict(ranges),
        "n_pairs": int(len(pairs["images"])),
        "loss_curve": run.history,
    }
    save_generator(args.model, gen)
    save_npz(args.generated, **pairs)
    with atomic_path(args.figures, is_dir=True) as folder:
        folder.chmod(0o755)  # a temporary folder is private; the figures are not
        k = int(section["judge"]["grid_patches"])
        save_figure(folder / "real_vs_generated.png", figures.pairs_grid(
            same["masks"], shown["floor"]["images"], same["images"], predictions[SAME], same["widths"],
            shown["floor_ids"], spec, k))
        save_figure(folder / "proposals.png", figures.proposals_grid(
            train["masks"][pairs["source_index"]], pairs, predictions[PROPOSED], spec, k))
        save_figure(folder / "distances.png", figures.distances_figure(verdict["sinkhorn"], verdict["floor_draws"]))
        save_figure(folder / "loss.png", figures.loss_figure(run.history, "generator training (flow matching)"))
    save_json(args.metrics, metrics)
    shutil.rmtree(Path(args.checkpoints) / STAGE, ignore_errors=True)
    # wall times go to the log only: outputs must not depend on them
    print(f"gen_patches: trained in {t_train:.0f} s, {len(pairs['images'])} pairs drawn in {t_pairs:.0f} s")
    comb = judge.COMBINED
    for name, d in verdict["sinkhorn"].items():
        print(f"  sinkhorn {name:40s} {d[comb]:.4f} (amplitude {d['amplitude']:.4f}, encoder {d['encoder']:.4f})")
    for name, f in verdict["faithfulness"].items():
        ci = verdict["faithfulness_ratio_interval"][name]
        where = f" [{ci['low']:.3f}, {ci['high']:.3f}]" if ci else ""
        print(f"  faithfulness {name}: IoU {f['iou']:.4f} (ratio to real held-out "
              f"{verdict['unet_real_heldout']['iou']:.4f}: {verdict['faithfulness_ratio'][name]:.3f}{where})")
    for check, ok in verdict["checks"].items():
        print(f"  [{'x' if ok else ' '}] {check}")


if __name__ == "__main__":
    main()

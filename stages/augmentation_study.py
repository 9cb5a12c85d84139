"""Stage augmentation_study: first U-Nets trained on k labelled wells with and without
generated pairs, scored on the held-out (validation) wells.

For each k of the params size, each draw of k labelled wells and each seed:
a generator of those wells plus unlabelled images draws a pool of pairs (k =
all reuses the gen_patches stage's pairs, whose generator saw every training
well), and the seed trains a U-Net on the real pairs and one on real +
generated pairs, same initialisation and same number of steps
(echocem.patchgen.study). Writes the metrics (per k and draw: IoU mean, std
and n over seeds for each arm, the paired gain with its bootstrap interval,
the verdict; per k of several draws, the same pooled over draws; every run's
per-patch scores), the tables (Markdown) and the figure. Finished generators,
pools and runs are kept under checkpoints/augmentation_study/<fingerprint>/
so an interrupted run resumes; the folder is removed once the outputs are
written.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from echocem.io import load_npz, save_figure, save_json, save_text
from echocem.runtime import resolve_device, stage_main, start_stage

STAGE = "augmentation_study"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--ingested", required=True, help="folder holding train.npz, test.npz, unlabeled.npz")
    p.add_argument("--prepared", required=True, help="folder holding normalization.json and splits.json")
    p.add_argument("--generated", default=None,
                   help="generated pairs of the gen_patches stage (.npz), used for k = all; without it the "
                        "study trains that generator too")
    p.add_argument("--metrics", required=True, help="output: study results (.json)")
    p.add_argument("--table", required=True, help="output: the study tables (.md)")
    p.add_argument("--figure", required=True, help="output: IoU and paired gain per k (.png)")
    p.add_argument("--checkpoints", default="checkpoints", help="scratch folder for resumable runs")
    return p.parse_args()


@stage_main
def main() -> None:
    args = parse_args()
    import torch  # noqa: F401  (imported before seeding so torch's generator is seeded too)

    params = start_stage(args.params, STAGE)

    from echocem.io import file_md5
    from echocem.patchgen import unet_adapter
    from echocem.patchgen.figures import study_figure
    from echocem.patchgen.fit import fingerprint
    from echocem.patchgen.study import run_study, summarise, table_markdown
    from echocem.patchgen.workflow import unlabelled_images
    from echocem.seg.accel import Accel
    from echocem.seg.inputs import load_labelled_inputs
    from echocem.seg.intervals import section_codes

    seed = int(params["seed"])
    device = resolve_device(params["execution"]["device"])
    section = params[STAGE]
    size = section["sizes"][section["size"]]
    gen_section = params["gen_patches"]
    gen_size = gen_section["sizes"][gen_section["size"]]
    unet_profile = unet_adapter.active_unet_profile(params["unet"])
    precision = Accel.from_profile(unet_profile, device).precision  # what its U-Nets train in

    ingested, prepared = Path(args.ingested), Path(args.prepared)
    labelled = load_labelled_inputs(ingested, prepared)
    data, spec, splits = labelled.data, labelled.spec, labelled.splits
    unlabelled = unlabelled_images(ingested)
    va = labelled.select_idx  # the held-out patches: the selection sections (params preprocess)
    heldout = {k: data[k][va] for k in ("images", "masks", "widths")}
    train = {k: data[k] for k in ("images", "masks", "widths", "ids", "well")}
    all_pool = load_npz(args.generated) if args.generated else None

    inputs = [*labelled.files, ingested / "unlabeled.npz", ingested / "test.npz"] + (
        [Path(args.generated)] if args.generated else [])
    fp = fingerprint({"stage": STAGE, "seed": seed, "study": section, "gen": gen_size,
                      "proposals": gen_section["proposals"], "unet": unet_profile, "device": device,
                      "precision": precision,
                      "inputs": [file_md5(p) for p in inputs]}, [])
    work = Path(args.checkpoints) / STAGE / fp
    records, gen_info = run_study(train, splits["train_wells"], unlabelled, heldout, spec, size,
                                  bool(section["other_wells_unlabelled"]), gen_size, gen_section["proposals"],
                                  unet_profile, seed, device, work, all_pool)
    table, pooled, intervals = summarise(records, float(section["level"]), int(section["n_boot"]), seed,
                                 sections=section_codes(data["well"][va], data["section"][va]))

    metrics = {
        "size": section["size"], "device": device, "precision": precision, "seed": seed,
        "level": float(section["level"]),
        "settings": dict(size), "other_wells_unlabelled": bool(section["other_wells_unlabelled"]),
        "val_wells": [int(w) for w in splits["val_wells"]], "train_wells": [int(w) for w in splits["train_wells"]],
        "table": table.to_dict("records"),
        "pooled": pooled.to_dict("records"),
        "paired_gain": intervals,
        "generators": gen_info,
        "runs": records,
        "interval_method": "per draw: echocem.stats.paired_difference_clustered over (seed, held-out patch) "
                           "items: seeds resampled, then the sections of each drawn seed (whole); pooled: "
                           "echocem.stats.paired_difference_nested: draws, then their seeds, then sections",
    }
    save_json(args.metrics, metrics)
    save_text(args.table, table_markdown(table, pooled))
    save_figure(args.figure, study_figure(table, pooled))
    shutil.rmtree(work, ignore_errors=True)
    print(table_markdown(table, pooled))
    for r in [*table.to_dict("records"), *pooled.to_dict("records")]:
        row = f"draw {r['draw']}" if "draw" in r else "pooled"
        print(f"augmentation_study: k={r['k']} {row}: gain {r['gain']:+.4f} [{r['gain_low']:+.4f}, "
              f"{r['gain_high']:+.4f}] -> {r['verdict']}")


if __name__ == "__main__":
    main()

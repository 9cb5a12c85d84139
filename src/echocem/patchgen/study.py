"""The augmentation study: does mixing generated pairs into U-Net training help when
labelled wells are scarce?

Plan: for each k (a number of labelled training wells, or "all" = every
training well), one seeded choice of k wells. For each seed, a generator is
trained on those wells' (image, mask) pairs plus unlabelled images (the
unlabelled and test splits, and, when `other_wells_unlabelled`, the other
training wells' images without their masks: labels are what is scarce, not
images); it draws a pool of pairs for mask proposals made from those wells'
masks. One generator per seed, because generators of the same setting differ
more than the U-Nets trained on their pairs do. Then two first U-Nets are
trained with the same initialisation and the same number of optimiser steps:
one on the k wells' real pairs ("without"), one on those plus
round(ratio * n_real) generated pairs of that seed's pool ("with"). Both are scored
patch by patch on the held-out (validation) wells, which no generator and no
U-Net has seen. No epoch is selected on them: each U-Net is taken at its last
step.

Aggregation: per k, each arm's IoU over seeds (mean, std, n) and the paired
gain with-minus-without: its estimate is the mean over seeds and held-out
patches, its interval the two-level percentile bootstrap of
echocem.stats.paired_difference_clustered: seeds drawn with replacement, then
the held-out sections of each drawn seed (whole: a section's patches err
together), so the interval covers the seeds' spread. The
verdict is "gain" when the interval lies above 0, "loss" when below, and
"no difference" otherwise: inside the noise is reported as no difference.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from echocem.io import EchoCemError, load_json, load_npz, save_json, save_npz
from echocem.runtime import derived_seed

ALL = "all"
ARMS = ("without", "with")


# --------------------------------------------------------------------------- plan


def k_label(k: int | str) -> str:
    return ALL if k == ALL else str(int(k))


def plan_subsets(train_wells: Sequence[int], ks: Sequence[int | str], seed: int) -> dict[str, tuple[int, ...]]:
    """{k label: the labelled wells of that setting}; one seeded choice per k."""
    wells = sorted(int(w) for w in train_wells)
    out: dict[str, tuple[int, ...]] = {}
    for k in ks:
        label = k_label(k)
        if label in out:
            raise EchoCemError(f"params augmentation_study ks: {k!r} is given twice")
        if label == ALL:
            out[label] = tuple(wells)
            continue
        if not 1 <= int(k) <= len(wells):
            raise EchoCemError(f"params augmentation_study ks: k={k} needs 1..{len(wells)} training wells "
                               f"(training wells {wells})")
        rng = np.random.default_rng(derived_seed(seed, "augmentation_study", "wells", label))
        out[label] = tuple(sorted(int(w) for w in rng.choice(wells, int(k), replace=False)))
    return out


def plan_runs(subsets: Mapping[str, tuple[int, ...]], n_seeds: int) -> list[dict]:
    """Every U-Net training of the study, in run order (k, seed, arm)."""
    if n_seeds < 1:
        raise EchoCemError(f"params augmentation_study seeds: need at least 1, got {n_seeds}")
    return [{"k": k, "wells": list(wells), "seed_index": s, "arm": arm}
            for k, wells in subsets.items() for s in range(n_seeds) for arm in ARMS]


# --------------------------------------------------------------------------- aggregation


def verdict(low: float, high: float) -> str:
    if low > 0:
        return "gain"
    if high < 0:
        return "loss"
    return "no difference"


def summarise(records: Sequence[Mapping[str, Any]], level: float = 0.95, n_boot: int = 2000, seed: int = 0,
              sections: Sequence[Any] | np.ndarray | None = None):
    """(pandas table one row per k, {k: paired-gain Interval as dict}) from run records.

    A record: k, seed_index, arm ("without" | "with"), scores (per held-out
    patch, same patch order in every run), plus n_real, n_generated, steps,
    wells. Every (k, seed) must have both arms. `sections`: the section of each
    held-out patch (e.g. echocem.seg.intervals.section_codes); within a drawn
    seed, whole sections are then resampled instead of single patches.
    """
    import pandas as pd

    from echocem.stats import paired_difference_clustered, seed_spread

    if not records:
        raise EchoCemError("augmentation study: no runs to summarise")
    rows, intervals = [], {}
    frame = pd.DataFrame([{**{k: v for k, v in r.items() if k != "scores"}, "iou": float(np.mean(r["scores"]))}
                          for r in records])
    for k, group in frame.groupby("k", sort=False):
        by_seed = {arm: {int(r["seed_index"]): r for r in records if r["k"] == k and r["arm"] == arm} for arm in ARMS}
        seeds = sorted(set(by_seed["without"]) & set(by_seed["with"]))
        unpaired = sorted(set(by_seed["without"]) ^ set(by_seed["with"]))
        if unpaired or not seeds:
            raise EchoCemError(f"augmentation study k={k}: seeds {unpaired} lack one of the two arms")
        a = np.concatenate([np.asarray(by_seed["with"][s]["scores"], float) for s in seeds])
        b = np.concatenate([np.asarray(by_seed["without"][s]["scores"], float) for s in seeds])
        strata = np.concatenate([np.full(len(by_seed["with"][s]["scores"]), s) for s in seeds])
        inner = None
        if sections is not None:
            inner = np.asarray(sections).reshape(-1)
            if inner.size != len(by_seed["with"][seeds[0]]["scores"]):
                raise EchoCemError(f"augmentation study k={k}: {inner.size} section labels for "
                                   f"{len(by_seed['with'][seeds[0]]['scores'])} held-out patches")
            inner = np.tile(inner, len(seeds))
        # seeds, then patches (whole sections): the gain's interval covers the spread between training runs too
        gain = paired_difference_clustered(a, b, strata, inner=inner, n_boot=n_boot, level=level,
                                           seed=derived_seed(seed, "study", k))
        without = seed_spread([float(np.mean(by_seed["without"][s]["scores"])) for s in seeds])
        with_ = seed_spread([float(np.mean(by_seed["with"][s]["scores"])) for s in seeds])
        per_seed = [float(np.mean(by_seed["with"][s]["scores"]) - np.mean(by_seed["without"][s]["scores"]))
                    for s in seeds]
        gains = seed_spread(per_seed)
        first = by_seed["with"][seeds[0]]
        rows.append({
            "k": k, "wells": " ".join(str(w) for w in first["wells"]), "n_real": int(first["n_real"]),
            "n_generated": int(first["n_generated"]), "n_seeds": len(seeds),
            "n_heldout": int(len(by_seed["without"][seeds[0]]["scores"])),
            "steps_without": int(by_seed["without"][seeds[0]]["steps"]), "steps_with": int(first["steps"]),
            "without_mean": without["mean"], "without_std": without["std"],
            "with_mean": with_["mean"], "with_std": with_["std"],
            "gain": gain.estimate, "gain_low": gain.low, "gain_high": gain.high,
            "seed_gain_std": gains["std"], "seeds_with_gain": int(sum(g > 0 for g in per_seed)),
            "verdict": verdict(gain.low, gain.high),
        })
        intervals[k] = {**gain.as_dict(), "per_seed_gain": per_seed}
    return pd.DataFrame(rows), intervals


def table_markdown(table) -> str:
    """The study table as Markdown: IoU mean +- std (n seeds) and the paired gain [95 % interval]."""
    def pm(mean: float, std: float | None) -> str:
        return f"{mean:.3f} +- {std:.3f}" if std is not None and not math.isnan(std) else f"{mean:.3f}"

    lines = ["| k | wells | real / generated pairs | without (mean +- std) | with (mean +- std) | seeds "
             "| paired gain [95 % interval] | seeds with gain | verdict |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in table.to_dict("records"):
        lines.append(f"| {r['k']} | {r['wells']} | {r['n_real']} / {r['n_generated']} "
                     f"| {pm(r['without_mean'], r['without_std'])} | {pm(r['with_mean'], r['with_std'])} "
                     f"| {r['n_seeds']} | {r['gain']:+.3f} [{r['gain_low']:+.3f}, {r['gain_high']:+.3f}] "
                     f"| {r['seeds_with_gain']}/{r['n_seeds']} | {r['verdict']} |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- running it


def _subset(data: Mapping[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
    return {k: np.asarray(v)[idx] for k, v in data.items()}


def run_study(train: Mapping[str, np.ndarray], train_wells: Sequence[int], unlabelled: Sequence[Mapping[str, np.ndarray]],
              heldout: Mapping[str, np.ndarray], norm_spec: Mapping[str, Any], size: Mapping[str, Any],
              other_wells_unlabelled: bool, gen_size: Mapping[str, Any], proposals_cfg: Mapping[str, Any],
              unet_profile: Mapping[str, Any], seed: int, device: str, work_dir: Path,
              all_pool: Mapping[str, np.ndarray] | None = None,
              progress: Callable[[str], None] = print) -> tuple[list[dict], dict]:
    """Run (or resume) every training of the study; returns (run records, {k: generator info per seed}).

    `train`: the labelled split (images, masks, widths, ids, well);
    `unlabelled`: image blocks (images, widths) never labelled; `heldout`: the
    validation wells' patches (images, masks, widths). `size`: one entry of
    params augmentation_study.sizes; `gen_size`: the gen_patches size whose
    generator settings the study uses (epochs from `size`). `all_pool`: pairs
    the gen_patches stage drew from a generator of every training well (used
    for k = all, by every seed, instead of training that generator again).
    Each finished pool (one per k and seed) and run is stored in `work_dir`; a
    rerun skips them.
    """
    from echocem.patchgen import unet_adapter
    from echocem.patchgen.mixing import mix_pairs, n_generated
    from echocem.patchgen.workflow import proposal_pairs, train_generator

    work_dir.mkdir(parents=True, exist_ok=True)
    subsets = plan_subsets(train_wells, size["ks"], seed)
    ratio, n_seeds, steps = float(size["ratio"]), int(size["seeds"]), int(size["unet_steps"])
    gen_cfg = {**gen_size, "train": {**gen_size["train"], "epochs": int(size["generator_epochs"])}}
    x_heldout_masks = np.asarray(heldout["masks"])
    records, gen_info = [], {}
    for k, wells in subsets.items():
        in_k = np.isin(train["well"], wells)
        real = _subset(train, np.flatnonzero(in_k))
        n_pool = max(1, n_generated(len(real["images"]), ratio))
        others = np.isin(train["well"], train_wells) & ~in_k
        extra = [{"images": train["images"][others], "widths": train["widths"][others]}] \
            if other_wells_unlabelled and others.any() else []
        gen_info[k] = []
        for s in range(n_seeds):
            unet_seed = derived_seed(seed, "augmentation_study", "unet", k, s)
            if k == ALL and all_pool is not None:
                pool = dict(all_pool)
                gen_info[k].append({"seed_index": s, "source": "gen_patches stage (every training well; one "
                                    "generator for every seed)", "n_pool": int(len(pool["images"]))})
            else:
                # each seed trains its own generator, so the seeds' spread covers the generator's training
                # too: at k = 1 one generator's pairs scored 0.61 IoU, three other seeds' 0.76 to 0.77
                # (docs/validation.md)
                task = f"study k={k} wells {list(wells)} seed {s}"
                pool_path, info_path = work_dir / f"pool_k{k}_seed{s}.npz", work_dir / f"generator_k{k}_seed{s}.json"
                if not pool_path.is_file():
                    progress(f"augmentation_study: training the generator of k={k} (wells {list(wells)}), seed {s}")
                    gen, _ = train_generator(real, [*unlabelled, *extra], norm_spec, gen_cfg, seed, device,
                                             work_dir / "generators", task)
                    save_json(info_path, {**gen.meta, "n_pool": n_pool})
                    save_npz(pool_path, **proposal_pairs(gen, real, n_pool, proposals_cfg, gen_size["sampling"],
                                                         seed, device, task))
                pool = load_npz(pool_path)
                gen_info[k].append({"seed_index": s, **load_json(info_path)})
            for arm in ARMS:
                path = work_dir / f"run_k{k}_seed{s}_{arm}.json"
                if path.is_file():
                    records.append(load_json(path))
                    continue
                rng = np.random.default_rng(derived_seed(seed, "augmentation_study", "mix", k, s))
                mixed = mix_pairs(real, pool, ratio if arm == "with" else 0.0, rng)
                x = unet_adapter.normalised_images(mixed["images"], mixed["widths"], norm_spec, device)
                model, ran = unet_adapter.train_unet(x, mixed["masks"], mixed["widths"], unet_profile, steps,
                                                     unet_seed, device, desc=f"k={k} seed {s} {arm}")
                pred = unet_adapter.predict_labels(model, heldout["images"], heldout["widths"], norm_spec, device,
                                                   int(unet_profile["train"]["eval_batch_size"]))
                scores = unet_adapter.patch_scores(x_heldout_masks, pred, heldout["widths"])
                rec = {"k": k, "wells": list(wells), "seed_index": s, "arm": arm, "steps": int(ran),
                       "n_real": int(len(real["images"])), "n_generated": int(mixed["is_generated"].sum()),
                       "scores": [round(float(v), 6) for v in scores]}
                save_json(path, rec)
                records.append(rec)
                progress(f"augmentation_study: k={k} seed {s} {arm}: held-out IoU {np.mean(scores):.4f}")
    return records, gen_info

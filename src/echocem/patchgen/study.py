"""The augmentation study: does mixing generated pairs into U-Net training help when
labelled wells are scarce?

Plan: for each k (a number of labelled training wells, or "all" = every
training well), `draws` distinct seeded choices of k wells (k = all has one).
Which wells are labelled moves the answer as much as how many: at k = 1 one
well's U-Net gained 0.10 IoU from generated pairs and another's lost 0.01
(docs/validation.md). For each draw and seed, a generator is trained on those
wells' (image, mask) pairs plus unlabelled images (the unlabelled and test
splits, and, when `other_wells_unlabelled`, the other training wells' images
without their masks: labels are what is scarce, not images); it draws a pool
of pairs for mask proposals made from those wells' masks. One generator per
seed, because generators of the same setting differ more than the U-Nets
trained on their pairs do. Then two first U-Nets are trained with the same
initialisation and the same number of optimiser steps: one on the k wells'
real pairs ("without"), one on those plus round(ratio * n_real) generated
pairs of that seed's pool ("with"). A seed index gives the same U-Net
initialisation and mixing stream in every draw (the draw changes the data).
Both U-Nets are scored patch by patch on the held-out (validation) wells,
which no generator and no U-Net has seen. No epoch is selected on them: each
U-Net is taken at its last step.

Aggregation, one row per k and draw: each arm's IoU over seeds (mean, std, n)
and the paired gain with-minus-without: its estimate is the mean over seeds
and held-out patches, its interval the two-level percentile bootstrap of
echocem.stats.paired_difference_clustered: seeds drawn with replacement, then
the held-out sections of each drawn seed (whole: a section's patches err
together), so the interval covers the seeds' spread. Where a k has several
draws, a pooled row answers for a labelled set drawn at random: its interval
(echocem.stats.paired_difference_nested) resamples the draws, then the seeds
of each, then the sections; beside it, the t interval over the draws' gains.
The verdict is "gain" when the interval lies above 0 (pooled: both
intervals), "loss" when below, and "no difference" otherwise: inside the
noise is reported as no difference.
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


def plan_subsets(train_wells: Sequence[int], ks: Sequence[int | str], seed: int,
                 draws: int = 1) -> dict[str, list[tuple[int, ...]]]:
    """{k label: the labelled wells of each draw}: `draws` distinct seeded choices per k, or every
    choice where fewer exist (k = all has one). Draw 0 is the choice of a one-draw study."""
    if int(draws) < 1:
        raise EchoCemError(f"params augmentation_study draws: need at least 1, got {draws}")
    wells = sorted(int(w) for w in train_wells)
    out: dict[str, list[tuple[int, ...]]] = {}
    for k in ks:
        label = k_label(k)
        if label in out:
            raise EchoCemError(f"params augmentation_study ks: {k!r} is given twice")
        if label == ALL:
            out[label] = [tuple(wells)]
            continue
        if not 1 <= int(k) <= len(wells):
            raise EchoCemError(f"params augmentation_study ks: k={k} needs 1..{len(wells)} training wells "
                               f"(training wells {wells})")
        rng = np.random.default_rng(derived_seed(seed, "augmentation_study", "wells", label))
        chosen: list[tuple[int, ...]] = []
        while len(chosen) < min(int(draws), math.comb(len(wells), int(k))):
            pick = tuple(sorted(int(w) for w in rng.choice(wells, int(k), replace=False)))
            if pick not in chosen:  # distinct sets: a repeated draw would count one set twice
                chosen.append(pick)
        out[label] = chosen
    return out


def plan_runs(subsets: Mapping[str, Sequence[tuple[int, ...]]], n_seeds: int) -> list[dict]:
    """Every (k, draw, seed) of the study, in run order; each trains both arms' U-Nets."""
    if n_seeds < 1:
        raise EchoCemError(f"params augmentation_study seeds: need at least 1, got {n_seeds}")
    return [{"k": k, "draw": d, "wells": list(wells), "seed_index": s}
            for k, sets in subsets.items() for d, wells in enumerate(sets) for s in range(n_seeds)]


# --------------------------------------------------------------------------- aggregation


def verdict(low: float, high: float) -> str:
    if low > 0:
        return "gain"
    if high < 0:
        return "loss"
    return "no difference"


def _paired_seeds(records: Sequence[Mapping[str, Any]], k: str, draw: int) -> tuple[dict, list[int]]:
    """({arm: {seed index: record}}, the seeds with both arms) of one k and draw."""
    by_seed = {arm: {int(r["seed_index"]): r for r in records
                     if r["k"] == k and int(r["draw"]) == draw and r["arm"] == arm} for arm in ARMS}
    seeds = sorted(set(by_seed["without"]) & set(by_seed["with"]))
    unpaired = sorted(set(by_seed["without"]) ^ set(by_seed["with"]))
    if unpaired or not seeds:
        raise EchoCemError(f"augmentation study k={k} draw {draw}: seeds {unpaired} lack one of the two arms")
    return by_seed, seeds


def summarise(records: Sequence[Mapping[str, Any]], level: float = 0.95, n_boot: int = 2000, seed: int = 0,
              sections: Sequence[Any] | np.ndarray | None = None):
    """(table: one row per k and draw, pooled: one row per k of several draws, {row name: interval as dict}).

    A record: k, draw, seed_index, arm ("without" | "with"), scores (per
    held-out patch, same patch order in every run), plus n_real, n_generated,
    steps, wells. Every (k, draw, seed) must have both arms. `sections`: the
    section of each held-out patch (e.g. echocem.seg.intervals.section_codes);
    within a drawn seed, whole sections are then resampled instead of single
    patches. Row names: "k=1 draw 0", "k=1 pooled".
    """
    import pandas as pd

    if not records:
        raise EchoCemError("augmentation study: no runs to summarise")
    n_heldout = len(records[0]["scores"])
    uneven = sorted({len(r["scores"]) for r in records} - {n_heldout})
    if uneven:
        raise EchoCemError(f"augmentation study: runs scored {[n_heldout, *uneven]} held-out patches; every run "
                           "must score the same ones")
    within = np.arange(n_heldout)  # what a drawn seed resamples: its patches, or its whole sections
    if sections is not None:
        within = np.asarray(sections).reshape(-1)
        if within.size != n_heldout:
            raise EchoCemError(f"augmentation study: {within.size} section labels for {n_heldout} held-out patches")
    opts = {"level": level, "n_boot": n_boot, "seed": seed}
    rows, pooled, intervals, draws_of = [], [], {}, {}
    for k, d in dict.fromkeys((r["k"], int(r["draw"])) for r in records):
        draw = _draw_summary(records, k, d, within, whole_sections=sections is not None, **opts)
        rows.append(draw["row"])
        intervals[f"k={k} draw {d}"] = draw["interval"]
        draws_of.setdefault(k, []).append(draw)
    for k, draws in draws_of.items():
        if len(draws) > 1:
            row, intervals[f"k={k} pooled"] = _pooled_summary(k, draws, **opts)
            pooled.append(row)
    return pd.DataFrame(rows), pd.DataFrame(pooled), intervals


def _draw_summary(records: Sequence[Mapping[str, Any]], k: str, d: int, within: np.ndarray, level: float,
                  n_boot: int, seed: int, whole_sections: bool) -> dict:
    """One draw's table row, its interval and its paired items (for pooling)."""
    from echocem.stats import paired_difference_clustered, seed_spread

    by_seed, seeds = _paired_seeds(records, k, d)
    a = np.concatenate([np.asarray(by_seed["with"][s]["scores"], float) for s in seeds])
    b = np.concatenate([np.asarray(by_seed["without"][s]["scores"], float) for s in seeds])
    strata, inner = np.repeat(seeds, within.size), np.tile(within, len(seeds))
    # seeds, then patches (whole sections): the gain's interval covers the spread between training runs too
    gain = paired_difference_clustered(a, b, strata, inner=inner if whole_sections else None, n_boot=n_boot,
                                       level=level, seed=derived_seed(seed, "study", k, d))
    means = {arm: [float(np.mean(by_seed[arm][s]["scores"])) for s in seeds] for arm in ARMS}
    per_seed = [w - wo for w, wo in zip(means["with"], means["without"])]
    first = by_seed["with"][seeds[0]]
    without, with_ = seed_spread(means["without"]), seed_spread(means["with"])
    row = {
        "k": k, "draw": d, "wells": " ".join(str(w) for w in first["wells"]), "n_real": int(first["n_real"]),
        "n_generated": int(first["n_generated"]), "n_seeds": len(seeds), "n_heldout": int(within.size),
        "steps_without": int(by_seed["without"][seeds[0]]["steps"]), "steps_with": int(first["steps"]),
        "without_mean": without["mean"], "without_std": without["std"],
        "with_mean": with_["mean"], "with_std": with_["std"],
        "gain": gain.estimate, "gain_low": gain.low, "gain_high": gain.high,
        "seed_gain_std": seed_spread(per_seed)["std"], "seeds_with_gain": int(sum(g > 0 for g in per_seed)),
        "verdict": verdict(gain.low, gain.high),
    }
    return {"row": row, "interval": {**gain.as_dict(), "per_seed_gain": per_seed},
            "items": {"a": a, "b": b, "draw": np.full(a.size, d), "seed": strata, "within": inner}}


def _pooled_summary(k: str, draws: Sequence[Mapping[str, Any]], level: float, n_boot: int,
                    seed: int) -> tuple[dict, dict]:
    """The pooled row of a k's draws and its interval: an answer for a labelled set drawn at random."""
    from scipy import stats as scipy_stats

    from echocem.stats import paired_difference_nested, seed_spread

    items = {key: np.concatenate([d["items"][key] for d in draws]) for key in draws[0]["items"]}
    # draws, then the seeds of each drawn draw, then that seed's sections (or patches)
    gain = paired_difference_nested(items["a"], items["b"], [items["draw"], items["seed"], items["within"]],
                                    n_boot=n_boot, level=level, seed=derived_seed(seed, "study", k, "pooled"))
    rows = [d["row"] for d in draws]
    per_draw = [r["gain"] for r in rows]
    # A percentile bootstrap of a handful of draws is too narrow (it never leaves the draws' own range and has
    # no t quantile); the t interval over the draws' gains misses the held-out patches' noise, which every draw
    # shares. The verdict takes the union of the two.
    t_low, t_high = (scipy_stats.t.interval(level, len(per_draw) - 1, loc=float(np.mean(per_draw)),
                                            scale=float(scipy_stats.sem(per_draw)))
                     if np.ptp(per_draw) > 0 else (per_draw[0], per_draw[0]))
    without = seed_spread([r["without_mean"] for r in rows])
    with_ = seed_spread([r["with_mean"] for r in rows])
    row = {
        "k": k, "n_draws": len(rows), "wells": "; ".join(r["wells"] for r in rows),
        "n_runs": int(sum(r["n_seeds"] for r in rows)), "n_heldout": rows[0]["n_heldout"],
        "without_mean": without["mean"], "without_std": without["std"],
        "with_mean": with_["mean"], "with_std": with_["std"],
        "gain": gain.estimate, "gain_low": gain.low, "gain_high": gain.high,
        "draws_t_low": float(t_low), "draws_t_high": float(t_high),
        "draw_gain_std": seed_spread(per_draw)["std"], "draws_with_gain": int(sum(g > 0 for g in per_draw)),
        "verdict": verdict(min(gain.low, t_low), max(gain.high, t_high)),
    }
    return row, {**gain.as_dict(), "per_draw_gain": per_draw}


def table_markdown(table, pooled=None) -> str:
    """The study tables as Markdown: per k and draw, IoU mean +- std (n seeds) and the paired gain
    [95 % interval]; then, where a k has several draws, the pooled rows (spread over draws)."""
    def pm(mean: float, std: float | None) -> str:
        return f"{mean:.3f} +- {std:.3f}" if std is not None and not math.isnan(std) else f"{mean:.3f}"

    def gain(r: Mapping[str, Any]) -> str:
        return f"{r['gain']:+.3f} [{r['gain_low']:+.3f}, {r['gain_high']:+.3f}]"

    lines = ["| k | draw | wells | real / generated pairs | without (mean +- std) | with (mean +- std) | seeds "
             "| paired gain [95 % interval] | seeds with gain | verdict |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in table.to_dict("records"):
        lines.append(f"| {r['k']} | {r['draw']} | {r['wells']} | {r['n_real']} / {r['n_generated']} "
                     f"| {pm(r['without_mean'], r['without_std'])} | {pm(r['with_mean'], r['with_std'])} "
                     f"| {r['n_seeds']} | {gain(r)} | {r['seeds_with_gain']}/{r['n_seeds']} | {r['verdict']} |")
    if pooled is not None and len(pooled):
        lines += ["", "Pooled over draws (IoU: mean +- std of the draws' means; interval: draws, then seeds, "
                  "then sections resampled):", "",
                  "| k | draws | wells per draw | without | with | runs | paired gain [95 % interval] "
                  "| t interval over the draws' gains | draws with gain | verdict |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in pooled.to_dict("records"):
            lines.append(f"| {r['k']} | {r['n_draws']} | {r['wells']} | {pm(r['without_mean'], r['without_std'])} "
                         f"| {pm(r['with_mean'], r['with_std'])} | {r['n_runs']} | {gain(r)} "
                         f"| [{r['draws_t_low']:+.3f}, {r['draws_t_high']:+.3f}] "
                         f"| {r['draws_with_gain']}/{r['n_draws']} | {r['verdict']} |")
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
    """Run (or resume) every training of the study; returns (run records, {k: generator info per draw and seed}).

    `train`: the labelled split (images, masks, widths, ids, well);
    `unlabelled`: image blocks (images, widths) never labelled; `heldout`: the
    validation wells' patches (images, masks, widths). `size`: one entry of
    params augmentation_study.sizes; `gen_size`: the gen_patches size whose
    generator settings the study uses (epochs from `size`). `all_pool`: pairs
    the gen_patches stage drew from a generator of every training well (used
    for k = all, by every seed, instead of training that generator again).
    Each finished pool (one per k, draw and seed) and run is stored in
    `work_dir`; a rerun skips them.
    """
    from echocem.patchgen import unet_adapter
    from echocem.patchgen.mixing import mix_pairs, n_generated
    from echocem.patchgen.workflow import proposal_pairs, train_generator

    work_dir.mkdir(parents=True, exist_ok=True)
    subsets = plan_subsets(train_wells, size["ks"], seed, int(size["draws"]))
    ratio, steps = float(size["ratio"]), int(size["unet_steps"])
    gen_cfg = {**gen_size, "train": {**gen_size["train"], "epochs": int(size["generator_epochs"])}}

    def seed_pool(unit: Mapping[str, Any], real: dict[str, np.ndarray]) -> tuple[dict, dict]:
        """(the pool of generated pairs the seed's "with" arm mixes in, its generator's record)."""
        k, d, s, wells = unit["k"], unit["draw"], unit["seed_index"], unit["wells"]
        if k == ALL and all_pool is not None:
            return dict(all_pool), {"source": "gen_patches stage (every training well; one generator for "
                                              "every seed)", "n_pool": int(len(all_pool["images"]))}
        # each seed trains its own generator, so the seeds' spread covers the generator's training too: at
        # k = 1 one generator's pairs scored 0.61 IoU, three other seeds' 0.76 to 0.77 (docs/validation.md)
        task = f"study k={k} wells {wells} seed {s}"
        pool_path, info_path = work_dir / f"pool_k{k}_d{d}_seed{s}.npz", work_dir / f"generator_k{k}_d{d}_seed{s}.json"
        if not pool_path.is_file():
            progress(f"augmentation_study: training the generator of k={k} draw {d} (wells {wells}), seed {s}")
            others = np.isin(train["well"], train_wells) & ~np.isin(train["well"], wells)
            extra = [{"images": train["images"][others], "widths": train["widths"][others]}] \
                if other_wells_unlabelled and others.any() else []
            gen, _ = train_generator(real, [*unlabelled, *extra], norm_spec, gen_cfg, seed, device,
                                     work_dir / "generators", task)
            n_pool = max(1, n_generated(len(real["images"]), ratio))
            save_json(info_path, {**gen.meta, "n_pool": n_pool})
            save_npz(pool_path, **proposal_pairs(gen, real, n_pool, proposals_cfg, gen_size["sampling"],
                                                 seed, device, task))
        return load_npz(pool_path), load_json(info_path)

    def arm_run(unit: Mapping[str, Any], real: dict[str, np.ndarray], pool: Mapping[str, np.ndarray],
                arm: str) -> dict:
        """One U-Net of one arm, trained and scored on the held-out patches: its run record."""
        k, d, s = unit["k"], unit["draw"], unit["seed_index"]
        path = work_dir / f"run_k{k}_d{d}_seed{s}_{arm}.json"
        if path.is_file():
            return load_json(path)
        # the same initialisation and mixing stream for a seed index in every draw and both arms
        rng = np.random.default_rng(derived_seed(seed, "augmentation_study", "mix", k, s))
        mixed = mix_pairs(real, pool, ratio if arm == "with" else 0.0, rng)
        x = unet_adapter.normalised_images(mixed["images"], mixed["widths"], norm_spec, device)
        model, ran = unet_adapter.train_unet(x, mixed["masks"], mixed["widths"], unet_profile, steps,
                                             derived_seed(seed, "augmentation_study", "unet", k, s), device,
                                             desc=f"k={k} draw {d} seed {s} {arm}")
        pred = unet_adapter.predict_labels(model, heldout["images"], heldout["widths"], norm_spec, device,
                                           int(unet_profile["train"]["eval_batch_size"]))
        scores = unet_adapter.patch_scores(np.asarray(heldout["masks"]), pred, heldout["widths"])
        rec = {**unit, "arm": arm, "steps": int(ran), "n_real": int(len(real["images"])),
               "n_generated": int(mixed["is_generated"].sum()), "scores": [round(float(v), 6) for v in scores]}
        save_json(path, rec)
        progress(f"augmentation_study: k={k} draw {d} seed {s} {arm}: held-out IoU {np.mean(scores):.4f}")
        return rec

    records, gen_info = [], {}
    for unit in plan_runs(subsets, int(size["seeds"])):
        real = _subset(train, np.flatnonzero(np.isin(train["well"], unit["wells"])))
        pool, info = seed_pool(unit, real)
        gen_info.setdefault(unit["k"], []).append({"draw": unit["draw"], "wells": unit["wells"],
                                                   "seed_index": unit["seed_index"], **info})
        records += [arm_run(unit, real, pool, arm) for arm in ARMS]
    return records, gen_info

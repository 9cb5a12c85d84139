"""The report as data: sections of tables, figures and text, built from a `Run` (pure).

The HTML and Markdown renderers only lay these blocks out, so what the report
says is decided here once.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence, Union

from echocem.report.load import Run

MAX_LIST = 12  # longer lists of numbers are summarised, not printed
MAX_GROUPS = 6  # nested mappings compared side by side in one table, at most


@dataclass
class Table:
    header: list[str]
    rows: list[list[Any]]
    caption: str = ""
    id: str | None = None
    highlight: set[int] = field(default_factory=set)  # row indices drawn emphasised


@dataclass
class Figure:
    title: str
    png: bytes
    caption: str = ""


@dataclass
class Text:
    text: str
    kind: str = "p"  # "p", "note" (a warning box), "code" or "h3" (a sub-heading)


@dataclass
class Details:
    """A collapsible group (closed by default)."""

    summary: str
    blocks: list["Block"]


Block = Union[Table, Figure, Text, Details]


@dataclass
class Section:
    id: str
    title: str
    blocks: list[Block]


# ---------------------------------------------------------------- formatting

def fmt(value: Any) -> str:
    """A value as a table cell: floats to 4 significant decimals, lists joined, None as a dash."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        if value == 0 or 1e-3 <= abs(value) < 1e5:
            return f"{value:.4f}"
        return f"{value:.3e}"
    if isinstance(value, (list, tuple)):
        if len(value) > MAX_LIST and all(isinstance(v, (int, float)) for v in value):
            return f"[{len(value)} values, first {fmt(value[0])}, last {fmt(value[-1])}]"
        return ", ".join(fmt(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def short_md5(md5: str | None) -> str:
    if md5 is None:
        return "–"
    return md5[:12] + (".dir" if md5.endswith(".dir") else "")


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, (str, int, float, bool)) or (
        isinstance(v, list) and all(_scalar(x) and not isinstance(x, list) for x in v))


def flatten(obj: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted key, leaf value) pairs of nested mappings, in key order."""
    if isinstance(obj, Mapping) and obj:
        out = []
        for k in sorted(obj, key=str):
            out.extend(flatten(obj[k], f"{prefix}.{k}" if prefix else str(k)))
        return out
    return [(prefix, obj)]


def _natural(key: str) -> tuple:
    """Sort key of a dotted key: numeric parts by value, so well 12 comes after well 2."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in key.split("."))


def side_by_side(groups: Mapping[str, Mapping], title: str) -> Table:
    """A few nested mappings (e.g. the data card's train/test/unlabeled splits) as one table:
    a row per dotted key, a column per group, a dash where a group lacks the key."""
    flat = {str(g): dict(flatten(v)) for g, v in groups.items()}
    keys = sorted({k for values in flat.values() for k in values}, key=_natural)
    return Table(["key", *flat], [[k, *(fmt(values.get(k)) for values in flat.values())] for k in keys], title)


def json_tables(obj: Any, title: str) -> list[Table]:
    """Tables for any JSON metrics object, whatever its keys (data card, generative metrics, ...).

    Top-level scalars form one key/value table; a mapping whose values are all
    mappings of scalars becomes a matrix (rows = its keys, columns = the union of
    inner keys); a few deeper mappings are compared side by side (see
    `side_by_side`); a list of records becomes a table of its columns; anything
    else is flattened to dotted keys.
    """
    if not isinstance(obj, Mapping):
        return [Table(["value"], [[fmt(obj)]], title)]
    scalars = [[k, fmt(v)] for k, v in sorted(obj.items(), key=lambda kv: str(kv[0])) if _scalar(v)]
    tables = [Table(["key", "value"], scalars, title)] if scalars else []
    for key in sorted((k for k, v in obj.items() if not _scalar(v)), key=str):
        value = obj[key]
        name = f"{title}: {key}" if title else str(key)
        if isinstance(value, Mapping) and value and all(isinstance(v, Mapping) and all(_scalar(x) for x in v.values())
                                                        for v in value.values()):
            cols = list(dict.fromkeys(c for v in value.values() for c in v))
            rows = [[str(r), *(fmt(value[r].get(c)) for c in cols)] for r in value]
            tables.append(Table([str(key), *map(str, cols)], rows, name))
        elif isinstance(value, Mapping) and 1 < len(value) <= MAX_GROUPS and all(
                isinstance(v, Mapping) and v for v in value.values()):
            tables.append(side_by_side(value, name))
        elif isinstance(value, list) and value and all(isinstance(r, Mapping) for r in value):
            cols = list(dict.fromkeys(c for r in value for c in r))
            tables.append(Table(cols, [[fmt(r.get(c)) for c in cols] for r in value], name))
        else:
            tables.append(Table(["key", "value"], [[k, fmt(v)] for k, v in flatten(value)], name))
    return tables


# ---------------------------------------------------------------- sections

def _missing(what: str) -> Text:
    return Text(f"{what}: not available (the stage that writes it has not run).", "note")


def data_section(run: Run) -> Section:
    blocks: list[Block] = []
    if run.data_card is None:
        blocks.append(_missing("reports/metrics/data_card.json"))
    else:
        blocks.append(Text("The data card written by the ingest stage: counts per well and split, "
                           "class frequencies, value statistics."))
        blocks.extend(json_tables(run.data_card, "data card"))
    if run.preview is not None:
        blocks.append(Figure("Preview of the prepared data", run.preview, "reports/figures/preview.png"))
    return Section("data", "Data", blocks)


def _label(ladder: Mapping[str, Any], rung: str) -> str:
    return (ladder.get("labels") or {}).get(rung, rung)


def ladder_tables(ladder: Mapping[str, Any]) -> list[Table]:
    """The ladder with intervals (id ladder-table), its gains (id ladder-gains), per well (id ladder-per-well)."""
    rungs, order = ladder["rungs"], list(ladder["order"])
    best = max(range(len(order)), key=lambda k: (rungs[order[k]]["iou"], -k))
    overall = {r["rung"]: r for r in ladder.get("intervals", []) if r.get("scope") == "all"}
    level = ladder.get("bootstrap", {}).get("level")
    rows = []
    for rung in order:
        r, iv = rungs[rung], overall.get(rung)
        rows.append([_label(ladder, rung), fmt(r["iou"]), _interval_cell(iv, digits=4), fmt(r["iou_class1"]), fmt(r["iou_class2"]),
                     str(r["n_patches"])])
    pct = f"{int(round(100 * level))} % interval" if level else "interval"
    tables = [Table(["model", "IoU (mean of classes 1, 2)", pct, "IoU class 1 (TIE)", "IoU class 2 (casing)",
                     "patches"], rows,
                    f"Challenge IoU on the validation wells {fmt(ladder['val_wells'])}; best rung emphasised.",
                    id="ladder-table", highlight={best})]
    diffs = [d for d in ladder.get("differences", []) if d.get("scope") == "all"]
    if diffs:
        tables.append(Table(
            ["gain", "paired difference of IoU", pct, "verdict"],
            [[f"{_label(ladder, d['a'])} vs {_label(ladder, d['b'])}", f"{d['estimate']:+.4f}",
              _interval_cell(d, digits=4, signed=True),
              ("gain" if d["low"] > 0 else "loss") if d["excludes_zero"] else "no difference within the interval"]
             for d in diffs],
            "Each part's gain: a rung against the one below it, paired on the same patches", id="ladder-gains"))
    wells = list(dict.fromkeys(str(w) for rung in order for w in rungs[rung].get("per_well", {})))
    header = ["model"] + [f"well {w} {part}" for w in wells for part in ("IoU", "TIE", "casing")]
    per_well_rows = []
    for rung in order:
        pw = rungs[rung].get("per_well", {})
        cells = []
        for w in wells:
            s = pw.get(w) or pw.get(str(w)) or {}
            cells += [fmt(s.get("iou")), fmt(s.get("iou_class1")), fmt(s.get("iou_class2"))]
        per_well_rows.append([_label(ladder, rung), *cells])
    tables.append(Table(header, per_well_rows, "The same per validation well (IoU, class 1 TIE, class 2 casing).",
                        id="ladder-per-well", highlight={best}))
    return tables


def _figure_title(name: str) -> str:
    return name.rsplit(".", 1)[0].replace("_", " ")


def ladder_section(run: Run) -> Section:
    if run.ladder is None:
        return Section("ladder", "Segmentation ladder", [_missing("reports/metrics/ladder.json")])
    blocks: list[Block] = [Text(
        "Each rung adds one part to the previous model; the score is the challenge IoU (per patch the mean "
        "of the IoU of class 1 and class 2, a class absent from truth and prediction counting 1; then the "
        "mean over patches).")]
    boot = run.ladder.get("bootstrap")
    if boot:
        blocks.append(Text(
            f"Intervals: {boot['n_boot']} bootstrap resamples of the {boot['n_patches']} validation patches"
            + (f" in {boot['n_sections']} sections" if "n_sections" in boot else "")
            + f" ({boot['resampling']}). A gain whose interval includes 0 is reported as no difference."))
    blocks.extend(ladder_tables(run.ladder))
    for name, png in run.ladder_figures.items():
        if name.startswith("ladder"):
            blocks.append(Figure(_figure_title(name), png, f"reports/figures/ladder/{name}"))
    return Section("ladder", "Segmentation ladder", blocks)


def curves_section(run: Run, curve_pngs: Sequence[bytes]) -> Section:
    blocks: list[Block] = []
    if run.curves:
        blocks.append(Text("Training curves of the networks (reports/plots/<stage>/, written with dvclive: one "
                           "step per epoch), drawn from their tables."))
        for curve, png in zip(run.curves, curve_pngs):
            blocks.append(Figure(curve.name.replace("_", " "), png))
    elif run.curve_images:
        for name, png in run.curve_images.items():
            blocks.append(Figure(_figure_title(name), png, f"reports/plots/{name}"))
    else:
        blocks.append(_missing("reports/plots/"))
    for name, metrics in run.model_metrics.items():
        blocks.append(Details(f"metrics of {name} (reports/metrics/{name}.json)", json_tables(metrics, name)))
    return Section("curves", "Training curves", blocks)


def overlays_section(run: Run) -> Section:
    figs = [Figure(_figure_title(n), png, f"reports/figures/ladder/{n}") for n, png in run.ladder_figures.items()
            if n.startswith(("best", "worst"))]
    if not figs:
        return Section("overlays", "Predictions: best and worst validation patches",
                       [_missing("reports/figures/ladder/best_*.png, worst_*.png")])
    return Section("overlays", "Predictions: best and worst validation patches",
                   [Text("Validation patches of the best rung with the highest and the lowest patch IoU: "
                         "image, truth, prediction.")] + figs)


def confusion_section(run: Run) -> Section:
    figs: list[Block] = [Figure(_figure_title(n), png, f"reports/figures/ladder/{n}")
                         for n, png in run.ladder_figures.items() if n.startswith("confusion")]
    other = [Figure(_figure_title(n), png, f"reports/figures/ladder/{n}") for n, png in run.ladder_figures.items()
             if not n.startswith(("confusion", "ladder", "best", "worst"))]
    return Section("confusion", "Confusion matrix", (figs or [_missing("reports/figures/ladder/confusion*.png")]) + other)


def generative_section(run: Run) -> Section:
    if not run.generative:
        return Section("generative", "Generative transport models", [_missing("reports/metrics/generative/*.json")])
    blocks: list[Block] = [Text("Monotone gradient networks (C-MGN, M-MGN) on five transport tasks: the metrics "
                                "each task stage wrote, and its figures.")]
    for task, metrics in run.generative.items():
        blocks.append(Text(f"Task: {task}", "h3"))
        blocks.extend(json_tables(metrics, task))
        for name, png in run.generative_figures.get(task, {}).items():
            blocks.append(Figure(f"{task}: {_figure_title(name)}", png, f"reports/figures/generative/{task}/{name}"))
    return Section("generative", "Generative transport models", blocks)


def transport_section(run: Run, figure_png: bytes | None) -> Section:
    """The W2 benchmark: every method's L2-UVP and cosine per D, the paper's figures beside."""
    title = "Transport maps on the W2 benchmark"
    if not run.transport:
        return Section("transport", title, [_missing("reports/metrics/transport/w2_d*.json")])
    from echocem.transport.table import formatted_table

    table = formatted_table(run.transport)
    n_seeds = sorted({int(s["uvp"]["n"]) for m in run.transport for s in m["methods"].values()})
    blocks: list[Block] = [
        Text("Maps from P (a mixture of 3 Gaussians) to Q = T*#P on the continuous Wasserstein-2 benchmark of "
             "Korotin, Li, Genevay, Solomon, Filippov and Burnaev (NeurIPS 2021; arrays under MIT licence in "
             "third_party/w2bench/). The solvers see samples of P and Q only. L2-UVP (%, lower is better) and the "
             f"cosine between T(x) - x and T*(x) - x on 2^14 fresh samples of P: mean ± std over "
             f"{'/'.join(map(str, n_seeds))} seeds, beside the paper's best solver and linear map."),
        Table([str(c) for c in table.columns], [[fmt(v) for v in row] for row in table.itertuples(index=False)],
              "W2 benchmark: L2-UVP % mean ± std (cosine)", id="transport-table"),
    ]
    if figure_png is not None:
        blocks.append(Figure("L2-UVP against the dimension D (log scale), every method", figure_png))
    return Section("transport", title, blocks)


def _interval_cell(iv: Mapping[str, Any] | None, digits: int = 3, signed: bool = False) -> str:
    """[low, high] of an interval record (`Interval.as_dict`); a dash when there is none."""
    spec = f"{'+' if signed else ''}.{digits}f"
    return f"[{iv['low']:{spec}}, {iv['high']:{spec}}]" if iv else "–"


def _floor_cell(draws: dict | None) -> str:
    """mean ± std (n) of the floor's draws; one draw has no spread to show."""
    if not draws:
        return "–"
    if draws.get("std") is None:
        return f"{draws['mean']:.3f} (1 draw: no spread)"
    return f"{draws['mean']:.3f} ± {draws['std']:.3f} ({draws['n']})"


def generated_patches_section(run: Run) -> Section:
    """The mask-conditioned patch generator: how close and how faithful, and whether it helps."""
    title = "Generated ultrasonic patches"
    blocks: list[Block] = []
    g = run.gen_patches
    if g is None:
        blocks.append(_missing("reports/metrics/gen_patches.json"))
    else:
        sets = list(g["sinkhorn"])
        contrast_rows = g.get("generator", {}).get("contrast_rows", 0.0)
        contrast = (f" and on the echoes' contrast row by row (smoothed over {contrast_rows:g} rows; sampling "
                    "draws the training patches' profiles)") if contrast_rows else ""
        blocks.append(Text(
            f"A generator of patches conditioned on a mask{contrast} (rectified flow, a U-Net denoiser with "
            "classifier-free guidance), trained on the training wells' pairs and on the unlabelled and test images "
            "without masks; "
            "the validation wells never reach it. Debiased Sinkhorn divergence (geomloss) between descriptors of "
            "held-out validation patches and of each set (amplitude and envelope statistics per class region, "
            "an out-of-fold U-Net's encoder features, both): lower is closer. The floor is real training patches; "
            "the naive sets are the baselines to beat."))
        floor = g.get("floor_draws", {})
        rows = [[name, *(fmt(g["sinkhorn"][name].get(b)) for b in ("amplitude", "encoder", "combined"))]
                for name in sets]
        rows.append(["floor spread over draws (mean ± std)", *(_floor_cell(floor.get(b)) for b in
                                                               ("amplitude", "encoder", "combined"))])
        blocks.append(Table(["set", "amplitude", "encoder", "combined"], rows,
                            "Sinkhorn divergence to the held-out patches", id="gen-sinkhorn"))
        real = g["unet_real_heldout"]
        ratio_ci = g.get("faithfulness_ratio_interval", {})  # records before the interval have none
        rows = [[name, fmt(v["iou"]), fmt(v["iou_class1"]), fmt(v["iou_class2"]),
                 fmt(g["faithfulness_ratio"][name]), _interval_cell(ratio_ci.get(name))]
                for name, v in g["faithfulness"].items()]
        rows.append(["real held-out patches", fmt(real["iou"]), fmt(real["iou_class1"]), fmt(real["iou_class2"]),
                     "1", ""])
        blocks.append(Table(["patches", "IoU", "TIE", "casing", "ratio to real", "95 % interval"], rows,
                            "Faithfulness: the U-Net's IoU against the masks the patches were generated from",
                            id="gen-faithfulness"))
        blocks.append(Table(["check", "met"], [[k, fmt(v)] for k, v in g["checks"].items()],
                            "The issue's checks", id="gen-checks"))
        for name, png in run.gen_patches_figures.items():
            blocks.append(Figure(_figure_title(name), png, f"reports/figures/gen_patches/{name}"))
    study = run.study
    if study is None:
        blocks.append(_missing("reports/metrics/augmentation_study.json"))
    else:
        blocks.append(Text(
            f"Augmentation study: first U-Nets on k training wells, without and with generated pairs from a "
            f"generator of the same wells, {study['table'][0]['n_seeds'] if study['table'] else '?'} seeds each, "
            f"the same optimiser steps in both arms, scored on the validation wells; paired gain with its "
            f"{int(100 * study['level'])} % interval ({study['interval_method']}).", "h3"))
        rows = [[r["k"], r["draw"], r["wells"], f"{r['n_real']} / {r['n_generated']}",
                 f"{r['without_mean']:.3f} ± {r['without_std']:.3f}", f"{r['with_mean']:.3f} ± {r['with_std']:.3f}",
                 r["n_seeds"], f"{r['gain']:+.3f} [{r['gain_low']:+.3f}, {r['gain_high']:+.3f}]",
                 f"{r['seeds_with_gain']}/{r['n_seeds']}", r["verdict"]] for r in study["table"]]
        blocks.append(Table(["k", "draw", "wells", "real / generated", "without", "with", "seeds",
                             "paired gain [interval]", "seeds with a gain", "verdict"], rows,
                            "Generated pairs in training, per draw of labelled wells", id="gen-study"))
        if study["pooled"]:
            rows = [[r["k"], r["n_draws"], r["wells"], f"{r['without_mean']:.3f} ± {r['without_std']:.3f}",
                     f"{r['with_mean']:.3f} ± {r['with_std']:.3f}", r["n_runs"],
                     f"{r['gain']:+.3f} [{r['gain_low']:+.3f}, {r['gain_high']:+.3f}]",
                     f"[{r['draws_t_low']:+.3f}, {r['draws_t_high']:+.3f}]",
                     f"{r['draws_with_gain']}/{r['n_draws']}", r["verdict"]] for r in study["pooled"]]
            blocks.append(Table(["k", "draws", "wells per draw", "without (over draws)", "with (over draws)", "runs",
                                 "paired gain [interval: draws, seeds, sections]", "t interval over the draws",
                                 "draws with a gain", "verdict (both intervals)"],
                                rows, "Pooled over the draws of labelled wells", id="gen-study-pooled"))
        if run.study_figure is not None:
            blocks.append(Figure("IoU without and with generated pairs, and the paired gain", run.study_figure))
    return Section("gen_patches", title, blocks)


def runtime_section(run: Run, runtime_png: bytes | None) -> Section:
    title = "Run time per stage"
    if not run.benchmarks:
        return Section("runtime", title, [Text(
            "No Snakemake benchmark files (logs/benchmarks/<stage>.tsv): the pipeline was run by `dvc repro`, "
            "which does not time stages. Run it with `snakemake` to see run times here.", "note")])
    rows, total = [], 0.0
    for name in run.stage_order:
        b = run.benchmarks.get(name)
        if b is None:
            rows.append([name, "–", "–", "–", "–"])
            continue
        total += float(b["s"])
        rss = b.get("max_rss")
        rows.append([name, f"{float(b['s']):.1f}", str(b.get("h:m:s", "–")),
                     f"{rss:.0f}" if isinstance(rss, float) else "–",
                     f"{b['cpu_time']:.1f}" if isinstance(b.get("cpu_time"), float) else "–"])
    rows.append(["total", f"{total:.1f}", "", "", ""])
    blocks: list[Block] = [Table(["stage", "wall s", "h:m:s", "max RSS MB", "CPU s"], rows,
                                 "From Snakemake's benchmark files, the last time each stage ran; a dash: no "
                                 "timing (the stage was run by DVC, its last job found it up to date, or it "
                                 "is this report).", id="runtime-table",
                                 highlight={len(rows) - 1})]
    if runtime_png is not None:
        blocks.append(Figure("Wall-clock time per stage", runtime_png))
    return Section("runtime", title, blocks)


def _record_note(run: Run) -> Text:
    files = [f for rec in run.records.values() for f in rec.files]
    if not run.records:
        return Text("No record of the pipeline could be read.", "note")
    stale = sorted(name for name, rec in run.records.items() if not rec.up_to_date)
    if not stale:
        return Text(f"All {len(files)} deps and outs of {len(run.records)} stages match dvc.lock "
                    "(DVC's status when this report was built).")
    return Text(f"DVC reports {len(stale)} stage(s) out of date when this report was built: {', '.join(stale)}. "
                "`dvc status` names what changed; `snakemake -n` lists what a run would redo.", "note")


def provenance_section(run: Run) -> Section:
    code = run.code or {}
    commit = code.get("git_commit") or "not a git repository"
    dirty = {True: "yes (uncommitted changes)", False: "no", None: "unknown"}[code.get("git_dirty")]
    blocks: list[Block] = [Table(["", ""], [["git commit", commit], ["uncommitted changes", dirty]],
                                 "Code version", id="code-version")]
    m = run.manifest
    if m is not None:
        sub = m.get("submission", {})
        built = m.get("code", {})
        rows = [["file", sub.get("path")], ["md5", sub.get("md5")], ["rows", sub.get("rows")],
                ["columns", sub.get("columns")], ["built at commit", built.get("git_commit") or "–"],
                ["built with uncommitted changes", fmt(built.get("git_dirty"))],
                ["params md5", m.get("params", {}).get("md5")]]
        rows += [[f"input {role}", f"{e.get('path')}  md5 {e.get('md5')}"] for role, e in sorted(m.get("inputs", {}).items())]
        blocks.append(Table(["submission", ""], [[k, fmt(v)] for k, v in rows],
                            "The submission manifest (check it with `python -m echocem audit submission/submission.csv`)",
                            id="submission-manifest"))
    else:
        blocks.append(_missing("submission/manifest.json"))
    blocks.append(Table(["stage", "params keys read"], [[s, ", ".join(k) or "–"] for s, k in run.stage_params.items()],
                        "Parameters each stage reads (dvc.yaml)"))
    for section, values in run.params.items():
        rows = [[k, fmt(v)] for k, v in flatten(values, section)]
        blocks.append(Details(f"params.yaml: {section} ({len(rows)} values)", [Table(["key", "value"], rows)]))
    blocks.append(_record_note(run))
    for name, rec in run.records.items():
        states = {f.state for f in rec.files} | ({"params changed"} if rec.changed_params else set())
        tag = "all match dvc.lock" if rec.up_to_date else ", ".join(sorted(states - {"match"}) + rec.other)
        table = Table(["", "path", "md5 in dvc.lock", "state"],
                      [[f.kind, f.path, short_md5(f.md5), f.state] for f in rec.files]
                      + [["params", k, "–", w] for k, w in sorted(rec.changed_params.items())])
        blocks.append(Details(f"record of stage {name}: {len(rec.files)} files ({tag})", [table]))
    versions = sorted(set(run.packages) | set((m or {}).get("packages", {})), key=str.lower)
    built_with = (m or {}).get("packages", {})
    blocks.append(Table(["package", "this environment", "the submission's manifest"],
                        [[p, fmt(run.packages.get(p)), fmt(built_with.get(p)) if p in built_with else "–"]
                         for p in versions], "Package versions", id="packages"))
    blocks.append(Table(["", ""], [[k, v] for k, v in run.hardware.items()],
                        "Hardware (the machine that built this report)", id="hardware"))
    return Section("provenance", "Provenance", blocks)


def headline(run: Run) -> list[tuple[str, str]]:
    """The few numbers at the top of the page and of the summary."""
    items = []
    if run.ladder is not None:
        order, rungs = run.ladder["order"], run.ladder["rungs"]
        best = max(order, key=lambda r: (rungs[r]["iou"], -order.index(r)))
        items.append(("best validation IoU", f"{rungs[best]['iou']:.4f} ({_label(run.ladder, best)})"))
    if run.manifest is not None:
        sub = run.manifest.get("submission", {})
        items.append(("submission", f"{sub.get('rows')} rows, md5 {str(sub.get('md5'))[:12]}"))
    if run.benchmarks:
        items.append(("pipeline run time", f"{sum(float(b['s']) for b in run.benchmarks.values()):.0f} s "
                                           f"over {len(run.benchmarks)} stages"))
    commit = run.code.get("git_commit")
    items.append(("code", (commit[:12] if commit else "no git") + (" (uncommitted changes)" if run.code.get("git_dirty") else "")))
    return items


def build_document(run: Run, curve_pngs: Sequence[bytes] = (), runtime_png: bytes | None = None,
                   drawn: Mapping[str, bytes] | None = None) -> list[Section]:
    """Every section of the report, in reading order.

    The figures the report draws itself are passed in (echocem.report.figures),
    so this stays a pure function of data.
    """
    sections = [
        data_section(run),
        ladder_section(run),
        curves_section(run, curve_pngs),
        overlays_section(run),
        confusion_section(run),
        generative_section(run),
        generated_patches_section(run),
        transport_section(run, (drawn or {}).get("transport")),
        runtime_section(run, runtime_png),
        provenance_section(run),
    ]
    if run.missing:
        sections.insert(0, Section("missing", "Missing inputs", [
            Text("This report was built from a partial run; these inputs are missing:", "note"),
            Table(["path"], [[m] for m in run.missing])]))
    return sections

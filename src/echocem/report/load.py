"""Everything the report shows, read from disk into one `Run` (the I/O edge of the report).

A missing input is not an error: the report says what is missing, so a partial
run can still be looked at. An input that exists but is malformed (bad JSON, a
ladder without its rungs, an unreadable curve table) raises EchoCemError naming
the file and the key.

Besides the stage's declared deps, the report reads the tools' own state, which
no stage produces: the pipeline and its record as DVC sees them (every stage
upstream of the report was recorded when it finished, echocem.stage_job), the
Snakemake benchmark files and git.
"""
from __future__ import annotations

import csv
import io
import math
import os
import platform
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

from echocem.checkout import inside_run
from echocem.dag import Stage
from echocem.io import EchoCemError, load_json
from echocem.provenance import code_version, load_manifest, package_versions
from echocem.records import StageRecord, read_records
from echocem.stage_job import job_was_skipped

# The challenge's ladder (echocem.seg.ladder) and the generative tasks, in reading order.
LADDER_KEYS = ("iou", "iou_class1", "iou_class2", "n_patches")
GENERATIVE_ORDER = ("gradient", "gaussian", "banana", "digits", "color")
MODEL_STAGES = ("rf_baseline", "unet", "unet_oof", "postproc_unet")
# versions shown besides those of the submission manifest (echocem.provenance.PACKAGES)
EXTRA_PACKAGES = ("pandas", "scikit-image", "matplotlib", "POT", "geomloss", "dvc", "snakemake")
_X_COLUMNS = ("epoch", "step", "iteration", "x")


@dataclass
class CurveTable:
    """A training-curve table: the x column and one series per other numeric column."""

    name: str
    x_label: str
    x: list[float]
    series: dict[str, list[float]]


@dataclass
class Run:
    """Everything the report shows; every field may be empty when its input is missing."""

    data_card: dict | None = None
    preview: bytes | None = None
    ladder: dict | None = None
    ladder_figures: dict[str, bytes] = field(default_factory=dict)
    model_metrics: dict[str, dict] = field(default_factory=dict)
    curves: list[CurveTable] = field(default_factory=list)
    curve_images: dict[str, bytes] = field(default_factory=dict)  # PNGs the training stage drew
    generative: dict[str, dict] = field(default_factory=dict)
    generative_figures: dict[str, dict[str, bytes]] = field(default_factory=dict)
    transport: list[dict] = field(default_factory=list)  # the W2 benchmark's metrics, one per D
    gen_patches: dict | None = None  # the patch generator's judgement (stage gen_patches)
    gen_patches_figures: dict[str, bytes] = field(default_factory=dict)
    study: dict | None = None  # the augmentation study (stage augmentation_study)
    study_figure: bytes | None = None
    manifest: dict | None = None
    benchmarks: dict[str, dict[str, Any]] = field(default_factory=dict)
    stage_order: list[str] = field(default_factory=list)
    stage_params: dict[str, list[str]] = field(default_factory=dict)  # stage -> params keys it reads
    params: dict[str, Any] = field(default_factory=dict)  # the values of those keys
    records: dict[str, StageRecord] = field(default_factory=dict)  # dvc.lock's record and DVC's status
    code: dict[str, Any] = field(default_factory=dict)
    packages: dict[str, str | None] = field(default_factory=dict)
    hardware: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- small readers

def _json_or_none(path: Path, run: Run) -> Any:
    if not path.is_file():
        run.missing.append(f"{path.as_posix()} (not produced yet)")
        return None
    return load_json(path)


def _pngs(folder: Path, run: Run) -> dict[str, bytes]:
    """name -> PNG bytes of the figures of a folder, sorted by name."""
    if not folder.is_dir():
        run.missing.append(f"{folder.as_posix()}/ (not produced yet)")
        return {}
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.png"))}


def check_ladder(ladder: Any, source: str) -> dict:
    """The ladder.json contract (echocem.seg.ladder.build_ladder); EchoCemError naming the key."""
    if not isinstance(ladder, dict):
        raise EchoCemError(f"{source}: expected a JSON object")
    for key in ("val_wells", "order", "rungs"):
        if key not in ladder:
            raise EchoCemError(f"{source}: key {key!r} missing")
    for rung in ladder["order"]:
        if rung not in ladder["rungs"]:
            raise EchoCemError(f"{source}: rung {rung!r} listed in 'order' but missing from 'rungs'")
        for key in (*LADDER_KEYS, "per_well"):
            if key not in ladder["rungs"][rung]:
                raise EchoCemError(f"{source}: key rungs.{rung}.{key} missing")
    return ladder


def _floats(values: list[str], where: str) -> list[float]:
    out = []
    for v in values:
        v = v.strip()
        if v in ("", "NA", "nan", "NaN", "None", "null"):
            out.append(math.nan)
            continue
        try:
            out.append(float(v))
        except ValueError as exc:
            raise EchoCemError(f"{where}: value {v!r} is not a number") from exc
    return out


def curve_from_records(name: str, records: list[dict], source: str) -> CurveTable:
    """A curve from a list of rows {column: value}; the x column is epoch/step/... or the first."""
    if not records or not all(isinstance(r, dict) for r in records):
        raise EchoCemError(f"{source}: expected a non-empty list of rows")
    columns = [c for c in records[0] if c != "timestamp"]
    x_col = next((c for c in _X_COLUMNS if c in columns), columns[0])
    ys = [c for c in columns if c != x_col]
    as_text = lambda c: ["" if r.get(c) is None else str(r.get(c)) for r in records]  # noqa: E731
    return CurveTable(name, x_col, _floats(as_text(x_col), f"{source}: column {x_col}"),
                      {c: _floats(as_text(c), f"{source}: column {c}") for c in ys})


def read_curves(path: Path, name: str | None = None) -> list[CurveTable]:
    """Curve tables of one DVC plots file: TSV/CSV with a header, or JSON rows."""
    name = name or path.stem
    if path.suffix in (".tsv", ".csv"):
        text = path.read_text()
        rows = list(csv.DictReader(io.StringIO(text), delimiter="\t" if path.suffix == ".tsv" else ","))
        if not rows:
            return []
        return [curve_from_records(name, rows, str(path))]
    doc = load_json(path)
    if isinstance(doc, list):
        return [curve_from_records(name, doc, str(path))]
    if isinstance(doc, dict):
        # dvclive / DVC plots JSON: {"<series>": [rows]}
        return [curve_from_records(f"{name} {key}", rows, f"{path}: {key}")
                for key, rows in doc.items() if isinstance(rows, list) and rows]
    raise EchoCemError(f"{path}: expected a list of rows or a mapping of row lists")


def read_benchmark(path: Path) -> dict[str, Any]:
    """The last row of a Snakemake benchmark TSV (s, h:m:s, max_rss, ..., cpu_time)."""
    rows = list(csv.DictReader(io.StringIO(path.read_text()), delimiter="\t"))
    if not rows or "s" not in rows[-1]:
        raise EchoCemError(f"{path}: not a Snakemake benchmark file (no 's' column)")
    row: dict[str, Any] = {}
    for key, value in rows[-1].items():
        try:
            row[key] = float(value)
        except (TypeError, ValueError):
            row[key] = value
    if not isinstance(row["s"], float) or math.isnan(row["s"]):
        raise EchoCemError(f"{path}: wall time 's' is {rows[-1]['s']!r}, not a number")
    row["runs"] = len(rows)
    return row


# ---------------------------------------------------------------- environment

def hardware() -> dict[str, str]:
    """The machine the report runs on (the stages ran here too unless a cluster ran them)."""
    info = {"platform": platform.platform(), "machine": platform.machine(), "python": platform.python_version()}
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(errors="replace"), re.M)
        if model:
            info["cpu"] = model.group(1).strip()
    info["cpu cores"] = str(os.cpu_count())
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        total = re.search(r"^MemTotal:\s*(\d+) kB", meminfo.read_text(), re.M)
        if total:
            info["memory"] = f"{int(total.group(1)) / 2**20:.1f} GiB"
    info["gpu"] = _gpus() or "none visible"
    return info


def _gpus() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        proc = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = [line.strip() for line in proc.stdout.splitlines() if line.strip()]
    return "; ".join(lines) if proc.returncode == 0 and lines else None


def all_package_versions() -> dict[str, str | None]:
    versions = package_versions()
    for name in EXTRA_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


# ---------------------------------------------------------------- the run

def _metric_path(stages: Mapping[str, Stage], name: str) -> str | None:
    stage = stages.get(name)
    return stage.metrics[0] if stage is not None and stage.metrics else None


def _out_path(stages: Mapping[str, Stage], name: str, prefix: str, suffix: str = "") -> str | None:
    """The output of stage `name` under `prefix` (a folder when suffix is ""), as dvc.yaml declares it."""
    stage = stages.get(name)
    for out in stage.outs if stage is not None else ():
        if out.startswith(prefix) and (out.endswith(suffix) if suffix else Path(out).suffix == ""):
            return out
    return None


def load_run(
    root: str | os.PathLike,
    stages: Mapping[str, Stage],
    params: Mapping[str, Any],
    shown_params: list[str],
    benchmarks: str = "logs/benchmarks",
    self_stage: str | None = "report",
) -> Run:
    """Read a finished (or partial) run below `root`.

    `stages` is the pipeline as DVC resolves it (echocem.dag.load_pipeline): every
    path read here is an output it declares, found by stage, so the report and the
    stages never disagree on where a result lies. `shown_params` are the params keys
    the report shows (the keys its stage declares).
    """
    from echocem.params import select

    root = Path(root)
    run = Run()

    def json_of(rel: str | None, what: str) -> Any:
        if rel is None:
            run.missing.append(f"{what} (no such stage output in dvc.yaml)")
            return None
        return _json_or_none(root / rel, run)

    run.data_card = json_of(_metric_path(stages, "ingest"), "data card of stage ingest")
    preview = _out_path(stages, "preprocess", "reports/", ".png")
    run.preview = (root / preview).read_bytes() if preview and (root / preview).is_file() else None
    if run.preview is None:
        run.missing.append(f"{preview or 'the preview figure of stage preprocess'} (not produced yet)")
    ladder_path = _metric_path(stages, "evaluate")
    ladder = json_of(ladder_path, "ladder of stage evaluate")
    run.ladder = None if ladder is None else check_ladder(ladder, str(ladder_path))
    figures = _out_path(stages, "evaluate", "reports/figures/")
    run.ladder_figures = _pngs(root / figures, run) if figures else {}
    for name in MODEL_STAGES:
        value = json_of(_metric_path(stages, name), f"metrics of stage {name}")
        if value is not None:
            run.model_metrics[name] = value
    for stage in stages.values():
        for out in stage.outs:
            if not out.startswith("reports/plots/") or Path(out).suffix:
                continue
            plots = root / out
            if not plots.is_dir():
                run.missing.append(f"{out}/ (not produced yet)")
                continue
            # dvclive's layout: plots/metrics/<group>/<name>.tsv, x column `step` (= epoch)
            for f in sorted((plots / "plots" / "metrics").rglob("*.tsv")):
                name = f"{stage.name} {f.relative_to(plots / 'plots' / 'metrics').with_suffix('').as_posix()}"
                run.curves.extend(read_curves(f, name))
            for f in sorted(plots.glob("*.png")):
                run.curve_images[f"{Path(out).name}/{f.name}"] = f.read_bytes()
    tasks = [s.name.split("@", 1)[1] for s in stages.values() if s.base == "gen"]
    for task in sorted(tasks, key=lambda t: (GENERATIVE_ORDER.index(t) if t in GENERATIVE_ORDER else 99, t)):
        metrics = json_of(_metric_path(stages, f"gen@{task}"), f"metrics of stage gen@{task}")
        if metrics is not None:
            run.generative[task] = metrics
            figs = _out_path(stages, f"gen@{task}", "reports/figures/")
            run.generative_figures[task] = _pngs(root / figs, run) if figs else {}
    for stage in sorted((s for s in stages.values() if s.base == "transport"), key=lambda s: s.name):
        metrics = json_of(_metric_path(stages, stage.name), f"metrics of stage {stage.name}")
        if metrics is not None:
            run.transport.append(metrics)
    run.transport.sort(key=lambda m: m.get("dim", 0))
    run.gen_patches = json_of(_metric_path(stages, "gen_patches"), "metrics of stage gen_patches")
    figs = _out_path(stages, "gen_patches", "reports/figures/")
    run.gen_patches_figures = _pngs(root / figs, run) if figs else {}
    run.study = json_of(_metric_path(stages, "augmentation_study"), "metrics of stage augmentation_study")
    study_png = _out_path(stages, "augmentation_study", "reports/figures/", ".png")
    if study_png and (root / study_png).is_file():
        run.study_figure = (root / study_png).read_bytes()
    manifest = _out_path(stages, "submission", "submission/", "manifest.json")
    run.manifest = load_manifest(root / manifest) if manifest and (root / manifest).is_file() else None
    if run.manifest is None:
        run.missing.append(f"{manifest or 'the manifest of stage submission'} (not produced yet)")
    bench = root / benchmarks
    for name in stages:
        f = bench / f"{name}.tsv"
        if not f.is_file():
            continue
        log = bench.parent / f"{name}.log"  # the rule's log, beside logs/benchmarks
        if log.is_file() and job_was_skipped(log.read_text(errors="replace"), name):
            continue  # its last job found it up to date: the benchmark timed that check, not the stage
        try:
            run.benchmarks[name] = read_benchmark(f)
        except EchoCemError as exc:
            # not a dep of the report (Snakemake writes them, DVC does not): a bad one must not stop it
            run.missing.append(f"{exc} (run time not shown)")
    run.stage_order = list(stages)
    run.stage_params = {s.name: list(s.params) for s in stages.values() if s.name != self_stage}
    run.params = select(dict(params), shown_params)
    # DVC's record and status; a stage of a run (the report under Snakemake or dvc repro)
    # works under the run's hold on the checkout
    try:
        records = read_records(root, held=inside_run(root))
    except EchoCemError as exc:  # not a DVC repository, or no readable record: the page says so
        records = {}
        run.missing.append(f"the pipeline's record ({exc})")
    run.records = {name: rec for name, rec in records.items() if name != self_stage}
    run.code = code_version(root)
    run.packages = all_package_versions()
    run.hardware = hardware()
    return run

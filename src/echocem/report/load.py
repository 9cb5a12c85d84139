"""Everything the report shows, read from disk into one `Run` (the I/O edge of the report).

A missing input is not an error: the report says what is missing, so a partial
run can still be looked at. An input that exists but is malformed (bad JSON, a
ladder without its rungs, an unreadable curve table) raises EchoCemError naming
the file and the key.

Besides the stage's declared deps, the report reads the tools' own state, which
no stage produces: dvc.yaml (the stages), dvc.lock (recorded hashes; written by
`dvc commit` after a Snakemake run, so it may be older than this run), the
Snakemake benchmark files, git, and every stage's files to hash them.
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

import yaml

from echocem.dag import Stage
from echocem.io import EchoCemError, load_json
from echocem.provenance import code_version, load_manifest, package_versions
from echocem.report.lineage import HashRow, LockStage, dvc_md5, load_lock, read_dvcignore

# The challenge's ladder (echocem.seg.ladder) and the generative tasks, in reading order.
LADDER_KEYS = ("iou", "iou_class1", "iou_class2", "n_patches")
GENERATIVE_ORDER = ("gradient", "gaussian", "banana", "digits", "color")
MODEL_METRICS = ("rf", "unet", "unet_oof", "postproc")
# versions shown besides those of the submission manifest (echocem.provenance.PACKAGES)
EXTRA_PACKAGES = ("pandas", "scikit-image", "matplotlib", "POT", "geomloss", "dvc", "snakemake")
_X_COLUMNS = ("epoch", "step", "iteration", "x")
_INTERP = re.compile(r"\$\{\s*([A-Za-z0-9_.]+)\s*\}")


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
    manifest: dict | None = None
    benchmarks: dict[str, dict[str, Any]] = field(default_factory=dict)
    stage_order: list[str] = field(default_factory=list)
    stage_params: dict[str, list[str]] = field(default_factory=dict)  # stage -> params keys it reads
    params: dict[str, Any] = field(default_factory=dict)  # the values of those keys
    lock_found: bool = False
    hashes: list[HashRow] = field(default_factory=list)
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


def read_curves(path: Path) -> list[CurveTable]:
    """Curve tables of one DVC plots file: TSV/CSV with a header, or JSON rows."""
    name = path.stem
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


# ---------------------------------------------------------------- params and hashes

def stage_param_keys(dvc_yaml: Path, stages: Mapping[str, Stage]) -> dict[str, list[str]]:
    """stage -> params keys it reads: the declared ones plus those its cmd/deps interpolate."""
    raw = yaml.safe_load(dvc_yaml.read_text()) if dvc_yaml.is_file() else {}
    specs = (raw or {}).get("stages", {}) or {}
    keys = {}
    for name, stage in stages.items():
        text = yaml.safe_dump({k: v for k, v in (specs.get(name) or {}).items() if k != "params"})
        interpolated = [k for k in dict.fromkeys(_INTERP.findall(text)) if k not in stage.params]
        keys[name] = [*stage.params, *interpolated]
    return keys


def hash_rows(root: Path, stages: Mapping[str, Stage], lock: Mapping[str, LockStage] | None,
              skip_stage: str | None = None) -> list[HashRow]:
    """Every declared dep and out of every stage: md5 now (as DVC computes it) and in dvc.lock.

    `skip_stage`'s outputs (the report being written) are left out.
    """
    ignore = read_dvcignore(root)
    cache: dict[str, str | None] = {}
    rows = []
    for stage in stages.values():
        recorded = lock.get(stage.name) if lock else None
        entries = [("dep", p) for p in stage.deps]
        if stage.name != skip_stage:
            entries += [("out", p) for p in stage.outs]
        for kind, path in entries:
            if path not in cache:
                cache[path] = dvc_md5(path, root, ignore)
            files = (recorded.deps if kind == "dep" else recorded.outs) if recorded else {}
            rows.append(HashRow(stage.name, kind, path, cache[path], files.get(path), in_lock=path in files))
    return rows


# ---------------------------------------------------------------- the run

def load_run(
    root: str | os.PathLike,
    stages: Mapping[str, Stage],
    params: Mapping[str, Any],
    shown_params: list[str],
    reports: str = "reports",
    manifest: str = "submission/manifest.json",
    benchmarks: str = "logs/benchmarks",
    lock: str = "dvc.lock",
    self_stage: str | None = "report",
) -> Run:
    """Read a finished (or partial) run below `root`.

    `stages` is the pipeline (echocem.dag.load_pipeline); `shown_params` are
    the params keys the report shows (the keys its stage declares);
    `reports` the folder holding metrics/, figures/ and plots/.
    """
    from echocem.params import select

    root = Path(root)
    rep = root / reports
    run = Run()
    run.data_card = _json_or_none(rep / "metrics" / "data_card.json", run)
    preview = rep / "figures" / "preview.png"
    run.preview = preview.read_bytes() if preview.is_file() else None
    if run.preview is None:
        run.missing.append(f"{(Path(reports) / 'figures' / 'preview.png').as_posix()} (not produced yet)")
    ladder_path = rep / "metrics" / "ladder.json"
    ladder = _json_or_none(ladder_path, run)
    run.ladder = None if ladder is None else check_ladder(ladder, str(ladder_path))
    run.ladder_figures = _pngs(rep / "figures" / "ladder", run)
    for name in MODEL_METRICS:
        value = _json_or_none(rep / "metrics" / f"{name}.json", run)
        if value is not None:
            run.model_metrics[name] = value
    plots = rep / "plots" / "unet"
    if plots.is_dir():
        for f in sorted(plots.iterdir()):
            if f.suffix in (".tsv", ".csv", ".json"):
                run.curves.extend(read_curves(f))
            elif f.suffix == ".png":
                run.curve_images[f.name] = f.read_bytes()
    else:
        run.missing.append(f"{plots.as_posix()}/ (not produced yet)")
    gen_dir = rep / "metrics" / "generative"
    found = sorted(p.stem for p in gen_dir.glob("*.json")) if gen_dir.is_dir() else []
    tasks = [t for t in GENERATIVE_ORDER if t in found] + [t for t in found if t not in GENERATIVE_ORDER]
    for task in [t for t in GENERATIVE_ORDER if t not in found]:
        run.missing.append(f"{(gen_dir / (task + '.json')).as_posix()} (not produced yet)")
    for task in tasks:
        run.generative[task] = load_json(gen_dir / f"{task}.json")
        run.generative_figures[task] = _pngs(rep / "figures" / "generative" / task, run)
    man_path = root / manifest
    run.manifest = load_manifest(man_path) if man_path.is_file() else None
    if run.manifest is None:
        run.missing.append(f"{manifest} (not produced yet)")
    bench = root / benchmarks
    for name in stages:
        f = bench / f"{name}.tsv"
        if not f.is_file():
            continue
        try:
            run.benchmarks[name] = read_benchmark(f)
        except EchoCemError as exc:
            # not a dep of the report (Snakemake writes them, DVC does not): a bad one must not stop it
            run.missing.append(f"{exc} (run time not shown)")
    run.stage_order = list(stages)
    keys = stage_param_keys(root / "dvc.yaml", stages)
    run.stage_params = {s: k for s, k in keys.items() if s != self_stage}
    run.params = select(dict(params), shown_params)
    recorded = load_lock(root / lock)
    run.lock_found = recorded is not None
    run.hashes = hash_rows(root, stages, recorded, skip_stage=self_stage)
    run.code = code_version(root)
    run.packages = all_package_versions()
    run.hardware = hardware()
    return run

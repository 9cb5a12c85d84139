"""params.yaml: the one configuration file, validated against a schema on load.

An unknown key, a wrong type or an out-of-range value raises EchoCemError with
the dotted key named, before any stage does work. The Snakefile calls
`load_params` at parse time, so `snakemake` stops before scheduling anything;
each stage calls it again so `dvc repro` and direct runs are checked too.
"""
from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

import yaml

from echocem.io import EchoCemError

SCHEMA_DIR = Path(__file__).with_name("schema")


@lru_cache(maxsize=1)
def _schema() -> dict:
    """The params schema: one JSON-Schema file per top-level section in schema/.

    `seed` is global; every other file `schema/<section>.yaml` describes the
    section of the same name, so each part of the pipeline owns its own schema.
    """
    sections = {f.stem: yaml.safe_load(f.read_text()) for f in sorted(SCHEMA_DIR.glob("*.yaml"))}
    properties = {"seed": {"type": "integer", "minimum": 0, "maximum": 2**32 - 1}, **sections}
    return {
        "type": "object",
        "additionalProperties": False,
        "required": sorted(properties),
        "properties": properties,
    }


def _dotted(path: Iterable[Any]) -> str:
    parts = [str(p) for p in path]
    return ".".join(parts) if parts else "<top level>"


def _describe(error) -> str:
    """One line per schema violation, naming the offending key."""
    where = _dotted(error.absolute_path)
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        keys = ", ".join(f"{where}.{k}" if error.absolute_path else k for k in extra)
        return f"unknown key {keys}"
    if error.validator == "required":
        missing = error.message.split("'")[1]
        key = f"{where}.{missing}" if error.absolute_path else missing
        return f"missing key {key}"
    if error.validator == "pattern":  # the regex says little: the field's description says what is allowed
        return f"key {where}: {error.instance!r} is not allowed: {error.schema.get('description', error.message)}"
    return f"key {where}: {error.message}"


def validate_params(params: Any, source: str = "params.yaml") -> dict:
    """Validate a params mapping; raise EchoCemError listing every bad key."""
    import jsonschema

    validator = jsonschema.Draft7Validator(_schema())
    errors = sorted(validator.iter_errors(params), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = "\n".join(f"  - {_describe(e)}" for e in errors)
        raise EchoCemError(f"{source}: invalid parameters:\n{lines}")
    return params


def check_raw_dir(params: dict, base: Path, source: str = "params.yaml") -> None:
    """With the real data, `data.raw_dir` must be a folder (relative to the repository):
    checked when params are loaded, so every entry point stops before any work."""
    data = params["data"]
    if data["source"] != "real":
        return  # the simulator writes it (schema: raw_dir is then data/raw/synthetic)
    folder = base / data["raw_dir"]
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise EchoCemError(f"{source}: key data.raw_dir: {data['raw_dir']!r} {what} (data.source is real: it must "
                           "hold the challenge download, X_train_*/ X_test_*/ X_unlabeled_*/ Y_train_*.csv)")


def read_yaml_mapping(path: str | Path, what: str = "params file") -> dict:
    """A YAML file whose top level is a mapping (params.yaml, a preset); EchoCemError names the file
    when it is missing, not YAML or not a mapping."""
    p = Path(path)
    if not p.is_file():
        raise EchoCemError(f"{p}: {what} not found")
    try:
        doc = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise EchoCemError(f"{p}: not valid YAML ({exc})") from exc
    if not isinstance(doc, dict):
        raise EchoCemError(f"{p}: expected a mapping at the top level")
    return doc


def load_params(path: str | Path = "params.yaml") -> dict:
    """Read and validate params.yaml (schema, then the raw data folder it names)."""
    p = Path(path)
    params = read_yaml_mapping(p)
    validate_params(params, str(p))
    check_raw_dir(params, p.resolve().parent, str(p))
    return params


def get_key(params: dict, dotted: str) -> Any:
    """Value of a dotted key such as 'unet.epochs'; EchoCemError names a missing key."""
    node: Any = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise EchoCemError(f"params: key {dotted} not found")
        node = node[part]
    return node


def select(params: dict, keys: Iterable[str]) -> dict:
    """Nested sub-mapping holding only `keys` (dotted); what a stage depends on."""
    out: dict = {}
    for dotted in keys:
        value = get_key(params, dotted)
        node = out
        parts = dotted.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = copy.deepcopy(value)
    return out


def set_key(params: dict, dotted: str, value: Any) -> dict:
    """Return a copy of params with one dotted key replaced (tests and experiments)."""
    new = copy.deepcopy(params)
    node = new
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return new


def deep_merge(base: dict, override: dict) -> dict:
    """Recursively merge `override` into a copy of `base` (mappings merge, others replace)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def active_profile(section: dict, name: str) -> dict:
    """The profile a params section selects (its `profile` names one entry of its `profiles`)."""
    chosen = section["profile"]
    if chosen not in section["profiles"]:
        raise EchoCemError(f"params {name}.profile: {chosen!r} is not one of {sorted(section['profiles'])}")
    return section["profiles"][chosen]


def cli_check(argv: list[str]) -> int:
    """`python -m echocem check-params [params.yaml]`: exit 0 if valid, 2 with the bad keys."""
    import sys

    path = argv[0] if argv else "params.yaml"
    try:
        load_params(path)
    except EchoCemError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{path}: valid")
    return 0

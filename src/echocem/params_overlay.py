"""`python -m echocem set-params`: apply a preset of params values (settings/*.yaml) and
KEY=VALUE overrides to params.yaml, the way `dvc exp run -S` does, keeping the file as written.

A preset maps dotted keys to values (`unet.profiles.small.train.epochs: 2`). Every key must
already exist in params.yaml (a typo is an error naming the key, as with `-S`), and the result
is validated against the schema before params.yaml is replaced (atomically): a bad preset
changes nothing. Written here rather than through DVC's `-S` writer because that one rewraps
every flow-style list of the file; ruamel's round trip keeps comments and layout.
"""
from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path
from typing import Any, Iterable

import yaml

from echocem.io import EchoCemError, atomic_path


def parse_assignment(text: str) -> tuple[str, Any]:
    """'a.b=VALUE' -> ('a.b', VALUE parsed as YAML, so 2 is an int and [1, 2] a list)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise EchoCemError(f"set-params: {text!r} is not KEY=VALUE (e.g. unet.profiles.small.train.epochs=2)")
    try:
        return key.strip(), yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError as exc:
        raise EchoCemError(f"set-params: the value of {key.strip()} is not valid YAML: {value!r}") from exc


def load_preset(path: str | Path) -> dict[str, Any]:
    """A preset file: a mapping of dotted keys to values."""
    from echocem.params import read_yaml_mapping

    data = read_yaml_mapping(path, "preset file")
    if not data:
        raise EchoCemError(f"{path}: expected a mapping of dotted params keys to values, got an empty one")
    return {str(k): v for k, v in data.items()}


def apply_assignments(doc: Any, assignments: Iterable[tuple[str, Any, str]]) -> list[tuple[str, Any, Any]]:
    """Set each (dotted key, value, source) in `doc` (a round-trip mapping) in place, in order;
    (key, old, new) per key. A key that does not exist raises, naming it and its source."""
    changes = []
    for dotted, value, source in assignments:
        node = doc
        parts = dotted.split(".")
        for depth, part in enumerate(parts):
            if not isinstance(node, dict) or part not in node:
                where = ".".join(parts[:depth + 1])
                raise EchoCemError(f"{source}: key {dotted}: params.yaml has no {where} (a preset only changes "
                                   "keys that exist)")
            if depth < len(parts) - 1:
                node = node[part]
        old = node[parts[-1]]
        if isinstance(old, dict):
            raise EchoCemError(f"{source}: key {dotted} is a section; set its keys one by one")
        node[parts[-1]] = _like(old, value)
        changes.append((dotted, _plain(old), value))
    return changes


def _like(old: Any, value: Any) -> Any:
    """A new list keeps the old one's flow style ([a, b] on one line) when the old had it."""
    from ruamel.yaml.comments import CommentedSeq

    if isinstance(old, CommentedSeq) and isinstance(value, list):
        seq = CommentedSeq(value)
        if old.fa.flow_style():
            seq.fa.set_flow_style()
        return seq
    return value


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, list) else value


def _round_trip():
    from ruamel.yaml import YAML

    rt = YAML()
    rt.preserve_quotes = True
    rt.width = 4096  # never rewrap a long line of the file
    rt.indent(mapping=2, sequence=4, offset=2)  # params.yaml's own block-list layout
    # null stays `null` (ruamel's default writes nothing after the colon)
    rt.representer.add_representer(type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null"))
    return rt


def set_params(params_path: str | Path, assignments: Iterable[tuple[str, Any, str]]) -> list[tuple[str, Any, Any]]:
    """Apply (dotted key, value, source) `assignments` to the params file, in order; the file
    is replaced only if every key exists and the result is valid, else it is left as it was."""
    from echocem.params import validate_params

    p = Path(params_path)
    if not p.is_file():
        raise EchoCemError(f"{p}: params file not found")
    rt = _round_trip()
    doc = rt.load(p.read_text())
    changes = apply_assignments(doc, assignments)
    buf = io.StringIO()
    rt.dump(doc, buf)
    text = buf.getvalue()
    validate_params(yaml.safe_load(text), f"{p} with these values")
    with atomic_path(p) as tmp:
        Path(tmp).write_text(text)
    return changes


def cli(argv: Iterable[str]) -> int:
    """`python -m echocem set-params [PRESET.yaml ...] [KEY=VALUE ...]`."""
    ap = argparse.ArgumentParser(prog="python -m echocem set-params", description=__doc__.split("\n\n")[0])
    ap.add_argument("items", nargs="+", help="preset files (settings/*.yaml) and KEY=VALUE overrides, applied in order")
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(list(argv))
    try:
        assignments = []
        for item in args.items:
            if "=" in item:
                assignments.append((*parse_assignment(item), "set-params"))
            else:
                assignments += [(key, value, item) for key, value in load_preset(item).items()]
        changes = set_params(args.params, assignments)
    except EchoCemError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for key, old, new in changes:
        print(f"{key}: {old!r} -> {new!r}")
    print(f"{args.params}: {len(changes)} value(s) set; `snakemake -n` lists what they make out of date")
    return 0

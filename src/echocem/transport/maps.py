"""One self-describing file format for a trained transport map, and `transport-map apply`.

A map file is a torch file (read with weights_only=True: tensors, numbers and strings only)
holding one dict:

    format  "echocem.transport-map/1"
    kind    cmgn | mmgn | icnn | linear | entropic
    dim     the dimension D it maps R^D -> R^D
    config  what rebuilds it (network sizes; epsilon for the entropic map)
    state   tensors (network weights; matrix/offset; support/potential)
    meta    free provenance (benchmark, seed, training budget, objective)

`load_map(path)` gives back a callable NumPy (n, D) -> (n, D), whatever the kind.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from echocem.io import EchoCemError, atomic_path

FORMAT = "echocem.transport-map/1"
KINDS = ("cmgn", "mmgn", "icnn", "linear", "entropic")


@dataclass(frozen=True)
class LoadedMap:
    kind: str
    dim: int
    meta: dict
    fn: Callable[[np.ndarray], np.ndarray]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise EchoCemError(f"transport map ({self.kind}, D={self.dim}): expected points of shape (n, {self.dim}), "
                               f"got {x.shape}")
        if not np.isfinite(x).all():
            raise EchoCemError("transport map: the points hold NaN or inf")
        return self.fn(x.astype(np.float64, copy=False))


def _blob(kind: str, dim: int, config: Mapping, state: Mapping[str, torch.Tensor], meta: Mapping) -> dict:
    if kind not in KINDS:
        raise ValueError(f"unknown map kind {kind!r} (expected one of {KINDS})")
    return {"format": FORMAT, "kind": kind, "dim": int(dim), "config": dict(config),
            "state": {k: v.detach().cpu().contiguous() for k, v in state.items()}, "meta": dict(meta)}


def network_blob(kind: str, model: torch.nn.Module, config: Mapping, meta: Mapping) -> dict:
    return _blob(kind, int(config["dim"]), config, model.state_dict(), meta)


def linear_blob(linear, meta: Mapping) -> dict:
    state = {"matrix": torch.as_tensor(linear.matrix), "offset": torch.as_tensor(linear.offset)}
    return _blob("linear", len(linear.offset), {"dim": len(linear.offset)}, state, meta)


def entropic_blob(entropic, meta: Mapping) -> dict:
    state = {"support": torch.as_tensor(entropic.support), "potential": torch.as_tensor(entropic.potential)}
    dim = entropic.support.shape[1]
    return _blob("entropic", dim, {"dim": dim, "epsilon": float(entropic.epsilon)}, state, meta)


def save_map(path: str | os.PathLike, blob: Mapping[str, Any]) -> None:
    """Write a map file atomically."""
    with atomic_path(path) as tmp:
        torch.save(dict(blob), tmp)


def read_map_file(path: str | os.PathLike) -> dict:
    p = Path(path)
    if not p.is_file():
        raise EchoCemError(f"{p}: transport map file not found")
    try:
        blob = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a foreign or damaged file
        raise EchoCemError(f"{p}: not a readable transport map file ({exc})") from exc
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        found = blob.get("format") if isinstance(blob, dict) else type(blob).__name__
        raise EchoCemError(f"{p}: expected a {FORMAT!r} file, found format {found!r}")
    if blob.get("kind") not in KINDS:
        raise EchoCemError(f"{p}: unknown map kind {blob.get('kind')!r} (expected one of {', '.join(KINDS)})")
    return blob


def map_from_blob(blob: Mapping[str, Any], source: str = "map") -> LoadedMap:
    """Rebuild the callable map of a blob (as read from a file or just made)."""
    from echocem.transport.entropic import EntropicMap
    from echocem.transport.fit_mgn import apply_model, make_mgn
    from echocem.transport.icnn import make_icnn
    from echocem.transport.linear import LinearMap

    kind, dim, config, state = blob["kind"], int(blob["dim"]), dict(blob["config"]), dict(blob["state"])
    try:
        if kind in ("cmgn", "mmgn", "icnn"):
            model = make_mgn(config) if kind != "icnn" else make_icnn(config)
            model.load_state_dict(state)
            model = model.to(next(iter(state.values())).dtype).eval()
            fn = lambda x: apply_model(model, x)
        elif kind == "linear":
            fn = LinearMap(state["matrix"].double().numpy(), state["offset"].double().numpy())
        else:
            fn = EntropicMap(state["support"].double().numpy(), state["potential"].double().numpy(),
                             float(config["epsilon"]))
    except (KeyError, RuntimeError, TypeError, ValueError) as exc:
        raise EchoCemError(f"{source}: the {kind} map cannot be rebuilt from its config/state ({exc})") from exc
    return LoadedMap(kind, dim, dict(blob.get("meta", {})), fn)


def load_map(path: str | os.PathLike) -> LoadedMap:
    return map_from_blob(read_map_file(path), str(path))


def apply_file(model_path: str | os.PathLike, in_path: str | os.PathLike, out_path: str | os.PathLike) -> np.ndarray:
    """Push the points of IN.npy (n, D) through the map of MODEL; write OUT.npy (float64)."""
    transport = load_map(model_path)
    p = Path(in_path)
    if not p.is_file():
        raise EchoCemError(f"{p}: input points not found")
    try:
        x = np.load(p, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise EchoCemError(f"{p}: not a readable .npy array ({exc})") from exc
    if not np.issubdtype(x.dtype, np.number):
        raise EchoCemError(f"{p}: expected a numeric array, got dtype {x.dtype}")
    try:
        y = transport(x)
    except EchoCemError as exc:
        raise EchoCemError(f"{p}: {exc}") from exc
    with atomic_path(out_path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, y, allow_pickle=False)
    return y


def cli(argv: list[str]) -> int:
    """`python -m echocem transport-map apply MODEL IN.npy OUT.npy` (and `info MODEL`)."""
    parser = argparse.ArgumentParser(prog="python -m echocem transport-map",
                                     description="use a trained transport map (models/transport/...)")
    sub = parser.add_subparsers(dest="action", required=True)
    apply = sub.add_parser("apply", help="push points (an (n, D) .npy) through a map")
    apply.add_argument("model", help="map file, e.g. models/transport/w2_d8/cmgn_seed0.pt")
    apply.add_argument("input", help="points, an (n, D) .npy array")
    apply.add_argument("output", help="where to write the mapped points (.npy, float64)")
    info = sub.add_parser("info", help="print what a map file holds")
    info.add_argument("model")
    args = parser.parse_args(argv)
    try:
        if args.action == "apply":
            y = apply_file(args.model, args.input, args.output)
            print(f"{args.output}: {y.shape[0]} points of dimension {y.shape[1]} mapped by {args.model}")
        else:
            blob = read_map_file(args.model)
            print(f"{args.model}: {blob['kind']} map, D={blob['dim']}, config={blob['config']}, meta={blob['meta']}")
    except EchoCemError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0

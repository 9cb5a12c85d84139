"""The setup every U-Net training stage repeats, in one place: params, seed, device, the
profile of its params section, the network config, the labelled inputs, its checkpoint
folder and its training patches (with the windows across patch borders)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from echocem.runtime import derived_seed
from echocem.seg.context import take, with_border_windows
from echocem.seg.dataset import SegSet, labelled_set
from echocem.seg.inputs import LabelledInputs, checkpoint_folder, load_labelled_inputs


@dataclass
class NetworkStage:
    """What every network stage sets up first: params, seed, device, the profile of its
    params section, the network config, and the labelled inputs."""

    params: dict[str, Any]
    seed: int
    device: str
    profile: dict[str, Any]
    model_cfg: dict[str, Any]
    inputs: LabelledInputs

    def checkpoint(self, root: str | Path, stage: str, extra_files: tuple[str | Path, ...] = (),
                   **config: Any) -> tuple[str, Path]:
        """Its resumable-checkpoint folder, keyed on seed, profile, device, `config` and the inputs."""
        return checkpoint_folder(root, stage, {"seed": self.seed, "profile": self.profile, "device": self.device,
                                               **config}, (*self.inputs.files, *extra_files))

    def patches(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        """The labelled patches `idx` (every per-patch array of train.npz)."""
        return take(self.inputs.data, idx)

    def training_patches(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        """Patches `idx` plus the windows across their patch borders (params unet context)."""
        rng = np.random.default_rng(derived_seed(self.seed, "windows"))
        return with_border_windows(self.patches(idx), int(self.profile["context"]["border_windows"]), rng)

    def on_device(self, arrays: Mapping[str, np.ndarray]) -> SegSet:
        """A SegSet of labelled arrays on the stage's device, normalised."""
        return labelled_set(arrays, self.inputs.spec, self.device)


def start_network_stage(args: Any, stage: str, section: str = "unet", seed: int | None = None,
                        in_channels: int = 1) -> NetworkStage:
    """start_stage, then the device, profile, network config and labelled inputs a network stage needs.
    `args` carries --params, --ingested and --prepared; `seed` defaults to params seed."""
    from echocem.params import active_profile
    from echocem.runtime import resolve_device, start_stage
    from echocem.seg.unet import model_config

    params = start_stage(args.params, stage)
    profile = active_profile(params[section], section)
    return NetworkStage(params=params, seed=int(params["seed"]) if seed is None else int(seed),
                        device=resolve_device(params["execution"]["device"]), profile=profile,
                        model_cfg=model_config(profile["model"], in_channels=in_channels),
                        inputs=load_labelled_inputs(args.ingested, args.prepared))

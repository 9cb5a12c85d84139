"""Kill-and-resume of the generator: a process killed (SIGKILL) after an epoch resumes from
its checkpoint and ends with exactly the weights of an uninterrupted run."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import torch

from echocem.patchgen.denoiser import build_velocity_net
from echocem.patchgen.fit import fingerprint, fit_generator, generator_data
from tests.pipeline import REPO, tool_env

KILL_AFTER = 2


def _setup(wells, norm_spec, tiny_size):
    # the params' default: a generator conditioned on the echoes' contrast (its profiles are resumed with it)
    data = generator_data({k: wells[k] for k in ("images", "masks", "widths")}, [], norm_spec, 2.0, "cpu",
                          float(tiny_size["model"]["contrast_rows"]))
    assert data.contrast is not None
    torch.manual_seed(11)
    net = build_velocity_net(tiny_size["model"])
    return data, net, fingerprint({"train": tiny_size["train"]}, data.arrays())


def test_killed_run_resumes_to_the_same_weights(wells, norm_spec, tiny_size, tmp_path):
    train_cfg = {**tiny_size["train"], "epochs": 4}
    np.savez(tmp_path / "wells.npz", **{k: wells[k] for k in ("images", "masks", "widths")})
    (tmp_path / "inputs.py").write_text(repr({"norm": norm_spec, "size": tiny_size, "train": train_cfg}))
    script = textwrap.dedent(f"""
        import ast, os, signal, numpy as np, torch
        torch.set_num_threads(1)
        from tests.patchgen.test_resume import _setup
        from echocem.patchgen.fit import fit_generator
        cfg = ast.literal_eval(open({str(tmp_path / 'inputs.py')!r}).read())
        wells = dict(np.load({str(tmp_path / 'wells.npz')!r}))
        data, net, fp = _setup(wells, cfg["norm"], cfg["size"])
        def kill(epoch, row):
            if epoch == {KILL_AFTER}:
                os.kill(os.getpid(), signal.SIGKILL)  # no clean-up, no flush: a real crash
        fit_generator(net, data, cfg["train"], 5, {str(tmp_path / 'ck')!r}, fp, on_epoch_end=kill)
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=tool_env(), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == -9, proc.stderr[-3000:]
    ck = torch.load(tmp_path / "ck" / "last.pt", weights_only=True)
    assert ck["epoch"] == KILL_AFTER

    data, net, fp = _setup(wells, norm_spec, tiny_size)
    resumed = fit_generator(net, data, train_cfg, 5, tmp_path / "ck", fp)
    assert resumed.start_epoch == KILL_AFTER + 1
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3, 4]

    data, net, fp = _setup(wells, norm_spec, tiny_size)
    straight = fit_generator(net, data, train_cfg, 5, None, fp)
    assert straight.history == resumed.history
    for key, value in straight.ema_state.items():
        assert torch.equal(value, resumed.ema_state[key]), key


def test_checkpoint_of_another_config_is_not_resumed(wells, norm_spec, tiny_size, tmp_path):
    train_cfg = {**tiny_size["train"], "epochs": 1}
    data, net, fp = _setup(wells, norm_spec, tiny_size)
    fit_generator(net, data, train_cfg, 5, tmp_path, fp)
    data, net, _ = _setup(wells, norm_spec, tiny_size)
    again = fit_generator(net, data, train_cfg, 5, tmp_path, "another-fingerprint")
    assert again.start_epoch == 1

"""Training: resume after an interruption, determinism, model selection, the out-of-fold plan.

That each out-of-fold network never trains on the wells it predicts is checked on the
fold stage's own record (tests/seg_unet/test_stages.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from echocem.io import EchoCemError
from echocem.seg.dataset import labelled_set
from echocem.seg.folds import oof_plan
from echocem.seg.inputs import fingerprint
from echocem.seg.segmenter import refit_epochs, train_segmenter
from echocem.seg.unet import model_config

TRAIN_WELLS, VAL_WELLS = (1, 2, 3), (4,)


class Interrupt(Exception):
    """Stands for a kill: raised from the epoch hook, after the epoch's checkpoint."""


def _run(patches, norm_spec, profile, ck_dir=None, hook=None, seed=7, epochs=4):
    wells = patches["well"]
    data = labelled_set(patches, norm_spec, "cpu")
    tr = np.flatnonzero(np.isin(wells, TRAIN_WELLS))
    va = np.flatnonzero(np.isin(wells, VAL_WELLS))
    fp = fingerprint({"profile": profile, "seed": seed, "epochs": epochs})
    return train_segmenter(data.subset(tr), data.subset(va), model_config(profile["model"]), profile, epochs,
                           seed, "cpu", ck_dir, fp, desc="test", on_epoch_end=hook)


def _state(trained):
    return {k: v.clone() for k, v in trained.model.state_dict().items()}


@pytest.fixture(scope="module")
def reference(patches, norm_spec, tiny_profile):
    """An uninterrupted 4-epoch run without checkpoints."""
    return _run(patches, norm_spec, tiny_profile)


def test_same_seed_gives_identical_weights_and_another_seed_does_not(reference, patches, norm_spec, tiny_profile):
    again = _run(patches, norm_spec, tiny_profile, epochs=4)
    ref = _state(reference)
    assert all(torch.equal(ref[k], v) for k, v in _state(again).items())
    assert again.fit.history == reference.fit.history
    other = _run(patches, norm_spec, tiny_profile, seed=8, epochs=1)
    assert not all(torch.equal(ref[k], v) for k, v in _state(other).items())


def test_model_selection_keeps_the_best_validation_epoch(reference):
    hist = reference.fit.history
    assert [r["epoch"] for r in hist] == [1, 2, 3, 4]
    best = max(hist, key=lambda r: r["val_iou"])
    assert reference.fit.best_epoch == min(r["epoch"] for r in hist if r["val_iou"] == best["val_iou"])
    assert reference.fit.best_scores["iou"] == pytest.approx(best["val_iou"], abs=1e-6)
    assert set(reference.fit.best_scores["per_well"]) == {"4"}


def test_interrupted_training_resumes_from_the_last_checkpoint(tmp_path, reference, patches, norm_spec,
                                                               tiny_profile):
    ck_dir = tmp_path / "checkpoints" / "unet" / "abc"
    ran = []

    def kill_after_two(epoch, row):
        ran.append(epoch)
        if epoch == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        _run(patches, norm_spec, tiny_profile, ck_dir, kill_after_two)
    assert ran == [1, 2] and (ck_dir / "last.pt").is_file()

    ran.clear()
    resumed = _run(patches, norm_spec, tiny_profile, ck_dir, lambda e, r: ran.append(e))
    assert resumed.fit.start_epoch == 3 and ran == [3, 4]  # epochs 1-2 were not redone
    assert resumed.fit.history == reference.fit.history
    assert resumed.fit.best_epoch == reference.fit.best_epoch
    ref = _state(reference)
    assert all(torch.equal(ref[k], v) for k, v in _state(resumed).items())


def test_a_checkpoint_of_another_configuration_is_not_resumed(tmp_path, patches, norm_spec, tiny_profile):
    ck_dir = tmp_path / "ck"
    _run(patches, norm_spec, tiny_profile, ck_dir, epochs=1)
    ran = []
    other = _run(patches, norm_spec, tiny_profile, ck_dir, lambda e, r: ran.append(e), seed=9, epochs=1)
    assert other.fit.start_epoch == 1 and ran == [1]


def test_a_checkpoint_of_the_other_precision_is_not_resumed(tmp_path, reference, patches, norm_spec,
                                                            tiny_profile, monkeypatch):
    """Same params and folder, but the first run's CPU trained in bf16 and the rerun's cannot: it starts
    over, and ends with the float32 run's weights."""
    from echocem.params import deep_merge
    from echocem.seg import accel as accel_module

    profile = deep_merge(tiny_profile, {"accel": {"cpu_bf16": True}})
    ck_dir = tmp_path / "ck"

    def kill_after_two(epoch, row):
        if epoch == 2:
            raise Interrupt

    monkeypatch.setattr(accel_module, "cpu_has_native_bf16", lambda: True)
    with pytest.raises(Interrupt):
        _run(patches, norm_spec, profile, ck_dir, kill_after_two)
    monkeypatch.setattr(accel_module, "cpu_has_native_bf16", lambda: False)
    ran = []
    again = _run(patches, norm_spec, profile, ck_dir, lambda e, r: ran.append(e))
    assert again.fit.start_epoch == 1 and ran == [1, 2, 3, 4]
    ref = _state(reference)
    assert all(torch.equal(ref[k], v) for k, v in _state(again).items())


def test_oof_plan_partitions_the_training_wells():
    wells = np.array([1, 1, 2, 3, 3, 4, 5, 6])
    plan = oof_plan(wells, [1, 2, 3, 4], [[1, 2], [3, 4]])
    assert [f.wells for f in plan] == [(1, 2), (3, 4)]
    for fold in plan:
        assert not set(wells[fold.train_idx]) & set(wells[fold.pred_idx])
        assert set(wells[fold.train_idx]) | set(wells[fold.pred_idx]) == {1, 2, 3, 4}
    with pytest.raises(EchoCemError, match=r"oof_folds\[1\] has wells \[5\] outside train_wells"):
        oof_plan(wells, [1, 2, 3, 4], [[1, 2, 3], [4, 5]])
    with pytest.raises(EchoCemError, match=r"must partition train_wells; repeated \[2\], missing \[4\]"):
        oof_plan(wells, [1, 2, 3, 4], [[1, 2], [2, 3]])


def test_a_refit_takes_the_steps_the_validation_chose():
    # 15 epochs on 98 samples are 1470 sample-steps: on 258 samples, 6 epochs (5.7 rounded)
    assert refit_epochs(15, 98, 258) == 6
    assert refit_epochs(4, 100, 100) == 4
    assert refit_epochs(1, 10, 1000) == 1  # never zero
    with pytest.raises(ValueError, match="positive counts"):
        refit_epochs(0, 10, 20)


def _one_step(profile, bf16: bool):
    """(logits dtype, loss, weights) after one training step on CPU, bf16 autocast or float32."""
    from echocem.seg.accel import Accel, execution_mode
    from echocem.seg.loop import StepRunner
    from echocem.seg.optim import make_optimizer
    from echocem.seg.segmenter import new_model

    accel = Accel("cpu", bf16=bf16, channels_last=True, compile=False, deterministic=True)
    with execution_mode(accel):
        model = new_model(model_config(profile["model"]), 0).to(memory_format=torch.channels_last)
        dtypes = []
        model.register_forward_hook(lambda module, inputs, output: dtypes.append(output.dtype))
        opt, sched = make_optimizer(model, profile["train"], 10, accel)
        runner = StepRunner(model, opt, sched, profile["train"], None, accel, torch.Generator().manual_seed(0))
        gen = torch.Generator().manual_seed(1)
        x = torch.randn(4, 1, 160, 272, generator=gen)
        y = torch.randint(0, 3, (4, 160, 272), generator=gen).to(torch.int8)
        loss = float(runner.step(x, y))
    return dtypes, loss, {k: v.clone() for k, v in model.state_dict().items()}


def test_a_bf16_step_computes_in_bf16_keeps_fp32_weights_and_repeats_exactly(tiny_profile):
    dtypes, loss, weights = _one_step(tiny_profile, bf16=True)
    assert dtypes == [torch.bfloat16] and np.isfinite(loss)
    assert all(v.dtype in (torch.float32, torch.int64) for v in weights.values())  # master weights stay fp32
    again = _one_step(tiny_profile, bf16=True)[2]
    assert all(torch.equal(weights[k], v) for k, v in again.items())
    fp32_dtypes, fp32_loss, fp32_weights = _one_step(tiny_profile, bf16=False)
    assert fp32_dtypes == [torch.float32]
    assert fp32_loss == pytest.approx(loss, rel=0.05)  # the same step, to bf16's precision
    assert not all(torch.equal(fp32_weights[k], v) for k, v in weights.items())


def test_training_precision_follows_the_profile_and_the_cpu(tiny_profile, monkeypatch):
    """bf16 on CUDA when `bf16` asks; on CPU only when `cpu_bf16` asks and the CPU has it natively."""
    from echocem.params import deep_merge
    from echocem.seg import accel as accel_module

    def precision(accel: dict, device: str, native: bool) -> str:
        monkeypatch.setattr(accel_module, "cpu_has_native_bf16", lambda: native)
        chosen = accel_module.Accel.from_profile(deep_merge(tiny_profile, {"accel": accel}), device)
        assert chosen.compile == (device == "cuda" and tiny_profile["accel"]["compile"])
        return chosen.precision

    assert not tiny_profile["accel"]["cpu_bf16"]  # the default: float32 on every CPU
    for native in (True, False):
        assert precision({"bf16": True, "cpu_bf16": False}, "cpu", native) == "fp32"
        assert precision({"bf16": False, "cpu_bf16": True}, "cpu", native) == ("bf16" if native else "fp32")
        assert precision({"bf16": True, "cpu_bf16": False}, "cuda", native) == "bf16"
        assert precision({"bf16": False, "cpu_bf16": True}, "cuda", native) == "fp32"

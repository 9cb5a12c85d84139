"""The post-processing U-Net: trained on out-of-fold probabilities, never worse than its input on val."""
from __future__ import annotations

import numpy as np
import torch

from echocem.seg.dataset import labelled_set
from echocem.seg.metric import challenge_iou
from echocem.seg.postproc import refine_proba
from echocem.seg.refiner_training import train_refiner
from echocem.seg.unet import labels_from_proba


def _blurred_probs(masks: np.ndarray, seed: int) -> np.ndarray:
    """Stand-in first-model probabilities: the truth, softened and corrupted."""
    rng = np.random.default_rng(seed)
    onehot = np.eye(3, dtype=np.float32)[np.clip(masks, 0, 2)].transpose(0, 3, 1, 2)
    logits = 2.0 * onehot + rng.normal(0, 1.0, onehot.shape).astype(np.float32)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def test_refiner_selection_includes_the_identity_and_never_loses_on_val(patches, norm_spec, tiny_refiner_profile):
    wells = patches["well"]
    tr, va = np.flatnonzero(wells != 4), np.flatnonzero(wells == 4)
    probs = _blurred_probs(patches["masks"], 0)
    data = labelled_set(patches, norm_spec, "cpu")
    cfg, trained = train_refiner(data.subset(tr), probs[tr], data.subset(va), probs[va], tiny_refiner_profile,
                                 seed=5, device="cpu")
    hist = trained.fit.history
    assert [r["epoch"] for r in hist] == [0, 1, 2] and hist[0]["train_loss"] is None
    widths = patches["widths"][va]
    alone = challenge_iou(patches["masks"][va], labels_from_proba(probs[va], widths), widths)["iou"]
    assert hist[0]["val_iou"] == round(alone, 6)  # epoch 0 is the U-Net's own answer
    refined = refine_proba(trained.model, probs[va], patches["images"][va], widths, norm_spec, "cpu", 8)
    after = challenge_iou(patches["masks"][va], labels_from_proba(refined, widths), widths)["iou"]
    assert after >= alone - 1e-9
    assert after == trained.fit.best_scores["iou"]
    assert cfg["in_channels"] == 4


def test_refiner_training_is_deterministic(patches, norm_spec, tiny_refiner_profile):
    wells = patches["well"]
    tr, va = np.flatnonzero(wells != 4), np.flatnonzero(wells == 4)
    probs = _blurred_probs(patches["masks"], 1)
    profile = {**tiny_refiner_profile, "train": {**tiny_refiner_profile["train"], "epochs": 1}}
    data = labelled_set(patches, norm_spec, "cpu")
    runs = [train_refiner(data.subset(tr), probs[tr], data.subset(va), probs[va], profile, seed=5,
                          device="cpu")[1] for _ in range(2)]
    a, b = (r.model.state_dict() for r in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_zero_headed_refiner_skips_its_network_in_inference_only(patches, norm_spec, tiny_refiner_profile):
    from echocem.seg.postproc import build_refiner, refiner_config

    cfg = refiner_config(tiny_refiner_profile["model"], float(tiny_refiner_profile["model"]["prob_floor"]))
    refiner = build_refiner(cfg, load_encoder_weights=False).eval()
    assert refiner.head_is_zero()
    probs = _blurred_probs(patches["masks"][:4], 2)
    widths = patches["widths"][:4]
    x = torch.cat([torch.randn(4, 1, 160, 272), torch.from_numpy(probs)], dim=1)
    calls = []
    hook = refiner.net.register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        skipped = refiner(x)
    assert calls == []  # the network did not run...
    with torch.enable_grad():
        run = refiner(x)
    assert calls == [1]  # ...and runs where gradients are needed
    assert torch.equal(skipped, run.detach())  # the same floats: net(x) is exactly 0
    run.sum().backward()
    head = [p for p in refiner.net.unet.segmentation_head.parameters()]
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in head)
    refined = refine_proba(refiner, probs, patches["images"][:4], widths, norm_spec, "cpu", 2)
    assert np.array_equal(labels_from_proba(refined, widths), labels_from_proba(probs, widths))
    # once trained (a non-zero head) inference runs the network
    with torch.no_grad():
        next(iter(refiner.net.unet.segmentation_head.parameters())).add_(0.1)
    assert not refiner.head_is_zero()
    with torch.no_grad():
        refiner(x)
    hook.remove()
    assert calls == [1, 1]

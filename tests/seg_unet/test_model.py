"""The networks: shapes at the native size, model files, batched inference."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from echocem.io import EchoCemError
from echocem.seg.postproc import (build_refiner, load_refiner, refine_proba, refiner_config,
                                  save_refiner)
from echocem.seg.unet import (build_model, labels_from_proba, load_model, model_config, predict_proba,
                              save_model)


@pytest.fixture(scope="module")
def tiny_model(tiny_profile):
    torch.manual_seed(0)
    return build_model(model_config(tiny_profile["model"]))


@pytest.mark.parametrize("height, width", [(160, 272), (160, 160), (150, 200)])
def test_forward_keeps_the_native_size(tiny_model, height, width):
    out = tiny_model.eval()(torch.randn(2, 1, height, width))
    assert out.shape == (2, 3, height, width)


def test_full_profile_builds_resnet34_and_pads_272_to_the_stride(repo_params):
    cfg = model_config(repo_params["unet"]["profiles"]["full"]["model"])
    assert cfg["encoder"] == "resnet34" and cfg["encoder_depth"] == 5  # 272 is not a multiple of 32
    model = build_model(cfg).eval()
    with torch.inference_mode():
        out = model(torch.randn(1, 1, 160, 272))
    assert out.shape == (1, 3, 160, 272)


def test_narrow_padded_patch_gives_the_same_logits_as_before_padding_on_its_columns(tiny_model):
    """A 160-wide patch zero-padded to 272 is a valid input; its padding is only more zeros."""
    x = torch.zeros(1, 1, 160, 272)
    x[..., :160] = torch.randn(1, 1, 160, 160)
    out = tiny_model.eval()(x)
    assert out.shape == (1, 3, 160, 272) and torch.isfinite(out).all()


def test_decoder_widths_must_match_the_depth(tiny_profile):
    bad = model_config({**tiny_profile["model"], "decoder_channels": [16, 8]})
    with pytest.raises(EchoCemError, match="decoder_channels has 2 entries but encoder_depth is 3"):
        build_model(bad)


def test_model_file_round_trip(tmp_path, tiny_profile, tiny_model):
    cfg = model_config(tiny_profile["model"])
    path = tmp_path / "unet.pt"
    save_model(path, tiny_model, cfg, {"best_epoch": 3})
    loaded, meta = load_model(path)
    assert meta["best_epoch"] == 3 and meta["config"] == cfg
    x = torch.randn(1, 1, 160, 272)
    with torch.inference_mode():
        assert torch.equal(loaded(x), tiny_model.eval()(x))
    # same weights, same bytes: DVC hashes stay put across reruns
    first = path.read_bytes()
    save_model(path, tiny_model, cfg, {"best_epoch": 3})
    assert path.read_bytes() == first


def test_model_file_errors_name_the_file(tmp_path, tiny_profile, tiny_model):
    with pytest.raises(EchoCemError, match="model file not found"):
        load_model(tmp_path / "missing.pt")
    refiner_path = tmp_path / "refiner.pt"
    cfg = refiner_config(tiny_profile["model"], 1e-4)
    save_refiner(refiner_path, build_refiner(cfg), cfg, {})
    with pytest.raises(EchoCemError, match="expected a 'echocem-unet/1' model file"):
        load_model(refiner_path)
    junk = tmp_path / "junk.pt"
    junk.write_text("not a model")
    with pytest.raises(EchoCemError, match="junk.pt: not a readable model file"):
        load_model(junk)


def test_local_encoder_weights_are_loaded_with_the_first_conv_adapted(tmp_path, tiny_profile):
    """An RGB encoder's weights (e.g. ImageNet, saved locally) feed a 1-channel encoder."""
    rgb = build_model({**model_config(tiny_profile["model"]), "in_channels": 3}).unet.encoder
    path = tmp_path / "encoder.pth"
    torch.save(rgb.state_dict(), path)
    cfg = {**model_config(tiny_profile["model"]), "encoder_weights_path": str(path)}
    grey = build_model(cfg).unet.encoder
    rgb_sd, grey_sd = rgb.state_dict(), grey.state_dict()
    first = next(k for k, v in rgb_sd.items() if v.ndim == 4 and v.shape[1] == 3)
    assert torch.allclose(grey_sd[first], rgb_sd[first].sum(dim=1, keepdim=True))
    other = [k for k, v in rgb_sd.items() if k != first and v.dtype.is_floating_point]
    assert all(torch.equal(grey_sd[k], rgb_sd[k]) for k in other)
    with pytest.raises(EchoCemError, match="encoder_weights_path: .*file not found"):
        build_model({**cfg, "encoder_weights_path": str(tmp_path / "absent.pth")})


def test_predict_proba_shapes_sums_and_padding(tiny_model, patches, norm_spec):
    images, widths = patches["images"][:5], patches["widths"][:5]
    probs = predict_proba(tiny_model, images, widths, norm_spec, "cpu", batch_size=2)
    assert probs.dtype == np.float32 and probs.shape == (5, 3, 160, 272)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    narrow = int(np.flatnonzero(widths == 160)[0])
    assert (probs[narrow, 0, :, 160:] == 1).all()  # padding: background
    pred = labels_from_proba(probs, widths)
    assert pred.dtype == np.int8 and (pred[narrow, :, 160:] == -1).all()
    assert set(np.unique(pred[narrow, :, :160])) <= {0, 1, 2}
    # batching does not change the answer
    np.testing.assert_allclose(predict_proba(tiny_model, images, widths, norm_spec, "cpu", batch_size=5), probs,
                               atol=1e-5)


def test_predict_proba_rejects_bad_shapes(tiny_model, patches, norm_spec):
    with pytest.raises(EchoCemError, match="widths must be"):
        predict_proba(tiny_model, patches["images"][:3], patches["widths"][:2], norm_spec, "cpu", 2)


def test_untrained_refiner_is_the_identity_and_refine_proba_shapes(tmp_path, tiny_profile, patches, norm_spec):
    cfg = refiner_config(tiny_profile["model"], 1e-4)
    torch.manual_seed(0)
    refiner = build_refiner(cfg)
    rng = np.random.default_rng(0)
    images, widths = patches["images"][:4], patches["widths"][:4]
    probs = rng.dirichlet([1, 1, 1], size=(4, 160, 272)).transpose(0, 3, 1, 2).astype(np.float32)
    out = refine_proba(refiner, probs, images, widths, norm_spec, "cpu", batch_size=3)
    assert out.shape == (4, 3, 160, 272) and out.dtype == np.float32
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-5)
    valid = np.arange(272)[None, :] < widths[:, None]
    for i in range(4):
        np.testing.assert_allclose(out[i][:, :, valid[i]], np.clip(probs[i][:, :, valid[i]], 1e-4, None)
                                   / np.clip(probs[i][:, :, valid[i]], 1e-4, None).sum(0), atol=1e-5)
    path = tmp_path / "refiner.pt"
    save_refiner(path, refiner, cfg, {"best_epoch": 0})
    loaded, meta = load_refiner(path)
    assert meta["best_epoch"] == 0
    np.testing.assert_array_equal(refine_proba(loaded, probs, images, widths, norm_spec, "cpu", 3), out)
    with pytest.raises(EchoCemError, match="refine_proba: probs must be"):
        refine_proba(loaded, probs[:, :2], images, widths, norm_spec, "cpu", 3)


def test_labels_from_proba_is_numpy_argmax_with_ties_and_padding():
    rng = np.random.default_rng(3)
    probs = rng.random((6, 3, 160, 272)).astype(np.float32)
    probs[:, 1, :20] = probs[:, 0, :20]            # ties between classes 0 and 1: class 0, as np.argmax
    probs[:, 2, 20:40] = probs[:, 1, 20:40] = 2.0  # ties between 1 and 2 at the maximum: class 1
    widths = np.array([272, 160, 272, 160, 160, 272])
    pred = labels_from_proba(probs, widths)
    expected = np.argmax(probs, axis=1).astype(np.int8)
    for k, w in enumerate(widths):
        expected[k, :, w:] = -1
    assert pred.dtype == np.int8 and np.array_equal(pred, expected)
    assert (pred[:, :20, :160] != 1).all() and (pred[:, 20:40, :160] == 1).all()

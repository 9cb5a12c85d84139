"""A tiny generator trains, and its samples keep the data contract: shape, dtype, padding."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from echocem.patchgen.denoiser import IN_CHANNELS, build_velocity_net, condition, valid_columns
from echocem.io import EchoCemError
from echocem.patchgen.flow import (MIN_REMAINING_TIME, SKIP_SIGMA_DATA, flow_matching_loss, pixel_weights, sample,
                                   skip_weights, velocity_of)
from echocem.patchgen.generate import load_generator, save_generator
from echocem.patchgen.workflow import draw, proposal_pairs, train_generator


@pytest.fixture(scope="module")
def trained(wells, norm_spec, tiny_size, tmp_path_factory):
    labelled = {k: wells[k][wells["well"] != 4] for k in ("images", "masks", "widths")}
    unlabelled = [{"images": wells["images"][wells["well"] == 4], "widths": wells["widths"][wells["well"] == 4]}]
    return train_generator(labelled, unlabelled, norm_spec, tiny_size, seed=3, device="cpu",
                           checkpoint_root=tmp_path_factory.mktemp("ck"), task="test")


def test_condition_channels():
    masks = torch.tensor([[[0, 1, 2, -1]], [[0, 1, 2, -1]]], dtype=torch.int8)
    cond = condition(masks, torch.tensor([True, False]))
    assert cond.shape == (2, 4, 1, 4) and IN_CHANNELS == 1 + cond.shape[1] + 1
    assert cond[0, :3, 0].T.tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0]]  # one-hot, padding zero
    assert (cond[0, 3] == 0).all() and (cond[1, 3] == 1).all()  # the "no mask" flag
    assert (cond[1, :3] == 0).all()  # a dropped mask leaves no trace


def test_tiny_generator_trains(trained):
    gen, run = trained
    assert [r["epoch"] for r in run.history] == [1, 2, 3]
    assert all(np.isfinite(r["loss"]) for r in run.history)
    assert run.steps == 3 * (16 // 4)
    assert gen.meta["n_labelled"] == 12 and gen.meta["n_unlabelled"] == 4
    fresh = build_velocity_net(gen.config)
    changed = [not torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), gen.net.state_dict().values())
               if a.dtype.is_floating_point]
    assert any(changed), "training moved the weights"


def test_loss_is_masked_on_padding(tiny_size):
    torch.manual_seed(0)
    net = build_velocity_net(tiny_size["model"])
    x1 = torch.zeros(2, 1, 32, 272)
    valid = valid_columns(torch.tensor([272, 160]), 32, 272)
    cond = condition(torch.zeros(2, 32, 272, dtype=torch.int8), torch.tensor([True, True]))
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    x1_junk = x1.clone()
    x1_junk[1, :, :, 160:] = 50.0  # garbage in the padding must not change the loss
    a = flow_matching_loss(net, x1, cond, valid, "uniform", "data", g1)
    b = flow_matching_loss(net, x1_junk * valid, cond, valid, "uniform", "data", g2)
    assert torch.allclose(a, b)


def test_tie_pixels_weigh_tie_weight_and_nothing_else_moves():
    masks = torch.tensor([[[0, 1, 2, 1, -1]], [[0, 1, 2, 1, -1]]], dtype=torch.int8)
    cond = condition(masks, torch.tensor([True, False]))  # the second patch's mask is dropped
    valid = (masks >= 0).unsqueeze(1).float()
    w = pixel_weights(cond, valid, 5.0)
    assert w[0, 0, 0].tolist() == [1, 5, 1, 5, 0]  # TIE pixels 5, background and casing 1, padding 0
    assert w[1, 0, 0].tolist() == [1, 1, 1, 1, 0]  # no mask, nothing to weigh
    assert torch.equal(pixel_weights(cond, valid, 1.0), valid)  # 1: the unweighted loss
    with pytest.raises(EchoCemError, match="tie_weight"):
        pixel_weights(cond, valid, 0.5)


def test_tie_weight_makes_the_loss_pay_for_tie_errors():
    """An error on the TIE costs tie_weight times more than the same error elsewhere."""
    net = lambda x_t, cond, t: torch.zeros_like(x_t)  # predicts a blank patch: errors where x1 is not 0
    masks = torch.zeros(1, 4, 8, dtype=torch.int8)
    masks[0, :, :2] = 1  # a quarter of the patch is TIE
    cond = condition(masks, torch.tensor([True]))
    valid = torch.ones(1, 1, 4, 8)
    on_tie, off_tie = torch.zeros(1, 1, 4, 8), torch.zeros(1, 1, 4, 8)
    on_tie[..., :2], off_tie[..., 2:4] = 1.0, 1.0

    def loss(x1, weight):  # blank "data" output: the velocity error is x1 / (1 - t), whatever the noise
        return float(flow_matching_loss(net, x1, cond, valid, "uniform", "data", torch.Generator().manual_seed(3),
                                        weight))

    assert loss(on_tie, 1.0) == pytest.approx(loss(off_tie, 1.0))  # unweighted: the same 8 pixels cost alike
    assert loss(on_tie, 10.0) == pytest.approx(10 * loss(off_tie, 10.0))


def test_data_space_weighs_the_velocity_error_by_a_power_of_the_remaining_time():
    """data_space 1: a patch's loss is its velocity error times (1 - t)^2, the error of the clean
    patch it implies, whatever t was drawn (below the clamp of 1 - t near the end of the path);
    0.5: times (1 - t)."""
    net = lambda x_t, cond, t: torch.zeros_like(x_t)  # predicts a blank patch
    cond = condition(torch.zeros(1, 4, 8, dtype=torch.int8), torch.tensor([True]))
    valid = torch.ones(1, 1, 4, 8)
    x1 = torch.full((1, 1, 4, 8), 2.0)

    def loss(data_space, seed):
        return float(flow_matching_loss(net, x1, cond, valid, "uniform", "data", torch.Generator().manual_seed(seed),
                                        1.0, data_space))

    below_clamp = 0
    for seed in range(8):  # each seed draws another time and other noise
        g = torch.Generator().manual_seed(seed)
        torch.randn(x1.shape, generator=g)  # the loss's noise, then its time
        t = float(torch.rand(1, generator=g))
        assert loss(1.0, seed) == pytest.approx(loss(0.0, seed) * (1 - t) ** 2, rel=1e-5)
        assert loss(0.5, seed) == pytest.approx(loss(0.0, seed) * (1 - t), rel=1e-5)
        if 1 - t >= MIN_REMAINING_TIME:
            below_clamp += 1
            assert loss(1.0, seed) == pytest.approx(4.0, rel=1e-5)  # (0 - 2)^2 on every pixel
    assert below_clamp >= 6
    with pytest.raises(EchoCemError, match="data_space"):
        loss(1.5, 0)


def test_skip_weights_are_the_least_squares_estimate_and_its_error():
    """For data of spread SKIP_SIGMA_DATA, c_skip x_t is the best linear estimate of x1 (its error
    is uncorrelated with x_t) and c_out is that error's spread, so the network's target has unit
    variance at every t."""
    g = torch.Generator().manual_seed(0)
    n = 400_000
    x1 = torch.randn(n, generator=g, dtype=torch.float64) * SKIP_SIGMA_DATA
    x0 = torch.randn(n, generator=g, dtype=torch.float64)
    for t in (0.1, 0.5, 0.8, 0.95):
        x_t = (1 - t) * x0 + t * x1
        c_skip, c_out = (float(c) for c in skip_weights(torch.tensor(t, dtype=torch.float64)))
        err = x1 - c_skip * x_t
        assert float((err * x_t).mean()) == pytest.approx(0.0, abs=3e-3)
        assert float(err.std()) == pytest.approx(c_out, rel=1e-2)
    ends = skip_weights(torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert ends[0].tolist() == [0.0, 1.0] and ends[1].tolist() == [SKIP_SIGMA_DATA, 0.0]


def test_data_skip_is_the_scaled_output_at_the_start_and_x_t_at_the_end():
    net = lambda x_t, cond, t: torch.ones_like(x_t)  # the network's raw output F = 1
    x_t = torch.randn(2, 1, 4, 8, generator=torch.Generator().manual_seed(1))
    v = velocity_of(net, x_t, None, torch.tensor([0.0, 1.0]), "data_skip")
    assert torch.allclose(v[0], SKIP_SIGMA_DATA - x_t[0])  # t = 0: clean patch sigma F, from x_t over 1 - t = 1
    assert torch.allclose(v[1], torch.zeros_like(v[1]))  # t = 1: the clean patch is x_t, whatever F
    with pytest.raises(EchoCemError, match="prediction"):
        velocity_of(net, x_t, None, torch.tensor([0.0, 1.0]), "noise")


def test_samples_have_the_contract(trained, wells):
    gen, _ = trained
    idx = np.array([0, 8, 9])  # two 272-wide patches and one 160-wide (well 3)
    imgs = draw(gen, wells["masks"][idx], wells["widths"][idx], {"steps": 2, "method": "heun", "guidance": 2.0,
                                                                 "batch_size": 2}, seed=0, device="cpu")
    assert imgs.shape == (3, 160, 272) and imgs.dtype == np.int16
    assert wells["widths"][9] == 160 and (imgs[2, :, 160:] == 0).all()
    assert (imgs[2, :, :160] != 0).mean() > 0.5 and (imgs[0] != 0).mean() > 0.5
    assert np.abs(imgs).max() <= 1000
    again = draw(gen, wells["masks"][idx], wells["widths"][idx], {"steps": 2, "method": "heun", "guidance": 2.0,
                                                                  "batch_size": 2}, seed=0, device="cpu")
    assert np.array_equal(imgs, again), "same seed, same patches"


def test_guidance_one_is_the_conditional_model(trained, wells):
    gen, _ = trained
    m = torch.from_numpy(wells["masks"][:2].astype(np.int64))
    valid = valid_columns(torch.from_numpy(wells["widths"][:2].astype(np.int64)), 160, 272)
    cond = condition(m, torch.tensor([True, True]))
    a = sample(gen.net, cond, valid, 2, 1.0, torch.Generator().manual_seed(0), "euler", gen.prediction)
    b = sample(gen.net, cond, valid, 2, 3.0, torch.Generator().manual_seed(0), "euler", gen.prediction)
    assert a.shape == (2, 1, 160, 272) and not torch.allclose(a, b)


def test_model_file_round_trip(trained, wells, tmp_path):
    gen, _ = trained
    save_generator(tmp_path / "g.pt", gen)
    back = load_generator(tmp_path / "g.pt")
    assert back.config == gen.config and back.prediction == "data_skip" and back.data_scale == 2.0
    s = {"steps": 1, "method": "euler", "guidance": 2.0, "batch_size": 2}
    assert np.array_equal(draw(gen, wells["masks"][:2], wells["widths"][:2], s, 4, "cpu"),
                          draw(back, wells["masks"][:2], wells["widths"][:2], s, 4, "cpu"))


def test_a_generator_file_of_unknown_output_is_refused_at_load(trained, tmp_path):
    from dataclasses import replace

    gen, _ = trained
    save_generator(tmp_path / "g.pt", replace(gen, prediction="noise"))
    with pytest.raises(EchoCemError, match=r"g\.pt.*'noise'"):
        load_generator(tmp_path / "g.pt")


def test_proposal_pairs_contract(trained, wells, proposals_cfg):
    gen, _ = trained
    train = {k: wells[k] for k in ("masks", "widths", "ids")}
    pairs = proposal_pairs(gen, train, 3, proposals_cfg, {"steps": 1, "method": "euler", "guidance": 2.0,
                                                         "batch_size": 3}, 0, "cpu", "test")
    assert pairs["images"].shape == pairs["masks"].shape == (3, 160, 272)
    assert pairs["images"].dtype == np.int16 and pairs["masks"].dtype == np.int8
    pad = np.arange(272)[None, None, :] >= pairs["widths"][:, None, None]
    assert (pairs["images"][np.broadcast_to(pad, pairs["images"].shape)] == 0).all()
    assert (pairs["masks"][np.broadcast_to(pad, pairs["masks"].shape)] == -1).all()
    assert (pairs["source_id"] == wells["ids"][pairs["source_index"]]).all()

"""Echo contrast profiles: known echo strengths read back, the prior, the conditioning they scale,
and a contrast-conditioned generator that keeps, samples with and records them."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from echocem.io import EchoCemError
from echocem.patchgen.contrast import ContrastPrior, contrast_profiles, scale_condition
from echocem.patchgen.denoiser import condition
from echocem.patchgen.flow import pixel_weights
from echocem.patchgen.generate import generate_images, load_generator, save_generator
from echocem.patchgen.workflow import proposal_pairs, train_generator

H, W = 160, 272
NO_SMOOTHING = 1e-3  # a Gaussian this narrow leaves a profile as it is


def striped_patch(casing: np.ndarray, tie: float | None, tie_rows: slice = slice(0, H), width: int = W,
                  background: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """A patch whose every region alternates +-its amplitude (so its RMS is that amplitude):
    background +-`background`, casing columns 10-24 +-casing[row], TIE columns 60-66 +-tie over
    `tie_rows`; padding beyond `width` holds junk that must not count."""
    sign = np.where((np.arange(H)[:, None] + np.arange(W)[None, :]) % 2 == 0, 1.0, -1.0)
    x = background * sign
    mask = np.zeros((H, W), np.int8)
    x[:, 10:25] = casing[:, None] * sign[:, 10:25]
    mask[:, 10:25] = 2
    if tie is not None:
        x[tie_rows, 60:67] = tie * sign[tie_rows, 60:67]
        mask[tie_rows, 60:67] = 1
    x[:, width:] = 999.0
    mask[:, width:] = -1
    return x, mask


def test_profiles_read_known_echo_strengths_row_by_row():
    rows = np.arange(H)
    casing = 10.0 + 4.0 * np.sin(rows / 25.0)
    x0, m0 = striped_patch(casing, 3.0, tie_rows=slice(0, 80))
    x1, m1 = striped_patch(np.full(H, 8.0), None, width=160)
    prof = contrast_profiles(np.stack([x0, x1]), np.stack([m0, m1]), np.array([W, 160]), NO_SMOOTHING)
    assert prof.shape == (2, 2, H)
    np.testing.assert_allclose(prof[0, 0], casing / 2.0, rtol=1e-6)  # the casing's RMS over the background's std
    np.testing.assert_allclose(prof[0, 1], 1.5, rtol=1e-6)  # rows 80-159 have no TIE: the nearest rows' value
    np.testing.assert_allclose(prof[1, 0], 4.0, rtol=1e-6)  # the padding's junk does not count
    assert np.isnan(prof[1, 1]).all()  # no TIE in the patch at all


def test_smoothing_spreads_a_step_along_depth_and_keeps_its_levels():
    casing = np.where(np.arange(H) < 80, 4.0, 12.0)
    x, m = striped_patch(casing, 3.0)
    sharp = contrast_profiles(x[None], m[None], np.array([W]), NO_SMOOTHING)[0, 0]
    smooth = contrast_profiles(x[None], m[None], np.array([W]), 8.0)[0, 0]
    assert sharp[80] - sharp[79] == pytest.approx(4.0)
    assert 0 < smooth[80] - smooth[79] < 1.0 and np.all(np.diff(smooth) >= 0)
    assert smooth[0] == pytest.approx(2.0) and smooth[-1] == pytest.approx(6.0)


def test_prior_normalises_by_the_median_and_draws_training_profiles():
    patches = [striped_patch(np.full(H, a), t) for a, t in ((6.0, 2.0), (10.0, None), (14.0, 4.0))]
    x, m = np.stack([p[0] for p in patches]), np.stack([p[1] for p in patches])
    prior = ContrastPrior.fit(x, m, np.full(3, W), 8.0)
    np.testing.assert_allclose(prior.median, [5.0, 1.5])  # casing 3, 5, 7 and TIE 1, 2 over the background's 2
    np.testing.assert_allclose(prior.bank[:, 0, 0], [0.6, 1.0, 1.4], rtol=1e-6)
    np.testing.assert_allclose(prior.bank[:, 1, 0], [2 / 3, 1.0, 4 / 3], rtol=1e-6)  # no TIE: the median, 1
    assert prior.bank.dtype == np.float32
    drawn = prior.draw(20, np.random.default_rng(0))
    assert drawn.shape == (20, 2, H)
    assert all(any(np.array_equal(d, b) for b in prior.bank) for d in drawn)
    no_tie = ContrastPrior.fit(x[1:2], m[1:2], np.full(1, W), 8.0)  # no training patch has a TIE
    assert no_tie.median[1] == 1.0 and (no_tie.bank[:, 1] == 1.0).all()
    with pytest.raises(EchoCemError, match="no labelled patches"):
        ContrastPrior.fit(x[:0], m[:0], np.zeros(0, int), 8.0)
    with pytest.raises(EchoCemError, match="smoothing length"):
        contrast_profiles(x, m, np.full(3, W), 0.0)


def test_scaling_touches_the_casing_and_tie_channels_row_by_row_only():
    masks = torch.tensor([[[0, 1, 2, -1], [0, 1, 2, -1]], [[0, 1, 2, -1], [0, 1, 2, -1]]], dtype=torch.int8)
    cond = condition(masks, torch.tensor([True, False]))
    profiles = torch.tensor([[[2.0, 3.0], [0.5, 0.25]], [[2.0, 3.0], [0.5, 0.25]]])  # (B, casing/TIE, rows)
    out = scale_condition(cond, profiles)
    assert out[0, 2, :, 2].tolist() == [2.0, 3.0] and out[0, 1, :, 1].tolist() == [0.5, 0.25]
    assert torch.equal(out[:, 0], cond[:, 0]) and torch.equal(out[:, 3], cond[:, 3])  # background, no-mask flag
    assert (out[1, :3] == 0).all() and (out[:, :3, :, 3] == 0).all()  # a dropped mask and padding stay empty
    # the TIE's loss weight follows where the TIE is, not how strong it is
    valid = (masks >= 0).unsqueeze(1).float()
    assert torch.equal(pixel_weights(out, valid, 5.0), pixel_weights(cond, valid, 5.0))
    with pytest.raises(EchoCemError, match=r"expected \(2, 2, 2\)"):
        scale_condition(cond, profiles[:, :, :1])


@pytest.fixture(scope="module")
def conditioned(wells, norm_spec, tiny_size, tmp_path_factory):
    labelled = {k: wells[k][wells["well"] != 4] for k in ("images", "masks", "widths")}
    unlabelled = [{"images": wells["images"][wells["well"] == 4], "widths": wells["widths"][wells["well"] == 4]}]
    assert tiny_size["model"]["contrast_rows"] > 0
    gen, _ = train_generator(labelled, unlabelled, norm_spec, tiny_size, seed=5, device="cpu",
                             checkpoint_root=tmp_path_factory.mktemp("ck"), task="contrast")
    return gen


def test_the_generator_keeps_its_prior_in_its_file(conditioned, tmp_path):
    assert conditioned.contrast.bank.shape == (12, 2, H)  # one profile per labelled patch
    save_generator(tmp_path / "g.pt", conditioned)
    back = load_generator(tmp_path / "g.pt")
    assert back.contrast.rows == 8.0
    np.testing.assert_array_equal(back.contrast.bank, conditioned.contrast.bank)
    np.testing.assert_array_equal(back.contrast.median, conditioned.contrast.median)
    save_generator(tmp_path / "plain.pt", replace(conditioned, contrast=None))
    assert load_generator(tmp_path / "plain.pt").contrast is None


def test_the_contrast_reaches_the_samples_and_the_pairs_record_it(conditioned, wells, proposals_cfg):
    masks, widths = wells["masks"][:2], wells["widths"][:2]

    def images(contrast):
        return generate_images(conditioned, masks, widths, 2, 2.0, "euler", 0, 2, contrast=contrast)

    faint, strong = np.full((2, 2, H), 0.5, np.float32), np.full((2, 2, H), 2.0, np.float32)
    assert not np.array_equal(images(faint), images(strong))
    assert np.array_equal(images(None), images(None))  # drawn from the prior with the seed
    with pytest.raises(EchoCemError, match=r"contrast profiles must be \(N, 2, H\)"):
        images(faint[:1])
    with pytest.raises(EchoCemError, match="not conditioned on contrast"):
        generate_images(replace(conditioned, contrast=None), masks, widths, 2, 2.0, "euler", 0, 2, contrast=faint)

    train = {k: wells[k] for k in ("masks", "widths", "ids")}
    pairs = proposal_pairs(conditioned, train, 3, proposals_cfg, {"steps": 1, "method": "euler", "guidance": 2.0,
                                                                  "batch_size": 3}, 0, "cpu", "test")
    assert pairs["contrast"].shape == (3, 2, H) and pairs["contrast"].dtype == np.float32
    assert all(any(np.array_equal(c, b) for b in conditioned.contrast.bank) for c in pairs["contrast"])

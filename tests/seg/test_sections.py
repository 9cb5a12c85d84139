"""Sections as strips: exact stitch/cut round trips, windowed inference, TTA, border windows."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from echocem.io import EchoCemError
from echocem.seg.sections import (
    PATCH_ROWS,
    Run,
    average_probs,
    border_windows,
    cut,
    cut_all,
    depth_taper,
    ensemble,
    flip_tta,
    predict_runs,
    runs_from_split,
    runs_table,
    section_runs,
    stitch,
    stitch_all,
    training_windows,
    window_index,
    window_starts,
    windowed_predict,
    windowed_predict_many,
)

H, W = PATCH_ROWS, 272

# (well, section, patch numbers, width): a gap (patch 3 missing), a one-patch section,
# a narrow well, and a section that starts at patch 1
LAYOUT = [
    (1, 1, [0, 1, 2, 3, 4], 272),
    (1, 2, [0, 1, 2, 4, 5], 272),
    (2, 7, [0], 272),
    (3, 1, [0, 1, 2], 160),
    (3, 2, [1, 2], 160),
]


def make_split(seed: int = 0, shuffle: bool = True) -> dict[str, np.ndarray]:
    """A split in the ingested layout, in a shuffled order, every patch distinct."""
    rng = np.random.default_rng(seed)
    rows = [(w, s, p, wd) for w, s, ps, wd in LAYOUT for p in ps]
    if shuffle:
        rows = [rows[i] for i in rng.permutation(len(rows))]
    n = len(rows)
    well, section, patch, widths = (np.array(c) for c in zip(*rows))
    images = rng.integers(-700, 700, size=(n, H, W)).astype(np.int16)
    masks = rng.integers(0, 3, size=(n, H, W)).astype(np.int8)
    for i, wd in enumerate(widths):
        images[i, :, wd:] = 0
        masks[i, :, wd:] = -1
    ids = np.array([f"well_{a}_section_{b}_patch_{c}" for a, b, c in zip(well, section, patch)])
    return {"images": images, "masks": masks, "widths": widths.astype(np.int16), "ids": ids,
            "well": well.astype(np.int32), "section": section.astype(np.int32), "patch": patch.astype(np.int32)}


def test_runs_follow_sections_split_at_gaps_and_keep_single_patches():
    data = make_split()
    runs = runs_from_split(data)
    table = runs_table(runs)
    assert table[["well", "section", "first_patch", "last_patch", "width"]].values.tolist() == [
        [1, 1, 0, 4, 272], [1, 2, 0, 2, 272], [1, 2, 4, 5, 272], [2, 7, 0, 0, 272],
        [3, 1, 0, 2, 160], [3, 2, 1, 2, 160],
    ]
    for run in runs:
        # indices point at the patches named, top first
        assert [data["patch"][i] for i in run.indices] == list(run.patches)
        assert {data["well"][i] for i in run.indices} == {run.well}
        assert {data["section"][i] for i in run.indices} == {run.section}
    assert runs[3].borders == () and runs[3].rows == H
    assert runs[0].borders == (160, 320, 480, 640)


def test_a_width_change_or_a_duplicate_is_handled():
    runs = section_runs([1, 1, 1], [1, 1, 1], [0, 1, 2], [272, 272, 160])
    assert [r.patches for r in runs] == [(0, 1), (2,)]
    with pytest.raises(EchoCemError, match="well 1 section 1 patch 1 appears twice"):
        section_runs([1, 1], [1, 1], [1, 1], [272, 272])
    with pytest.raises(EchoCemError, match="values of patch"):
        section_runs([1, 1], [1, 1], [1], [272, 272])
    assert section_runs([], [], [], []) == []


@pytest.mark.parametrize("shuffle", [False, True])
def test_stitch_then_cut_returns_the_exact_patches(shuffle):
    data = make_split(seed=1, shuffle=shuffle)
    runs = runs_from_split(data)
    n = len(data["ids"])
    probs = np.random.default_rng(2).random((n, 3, H, W)).astype(np.float32)
    for key, arr in (("images", data["images"]), ("masks", data["masks"]), ("probs", probs)):
        strips = stitch_all(arr, runs)
        back = cut_all(strips, runs, n)
        assert back.dtype == arr.dtype
        np.testing.assert_array_equal(back, arr, err_msg=key)


def test_a_strip_is_the_patches_stacked_along_depth_with_their_padding():
    data = make_split(seed=3)
    runs = runs_from_split(data)
    for run in runs:
        strip = stitch(data["images"], run)
        assert strip.shape == (run.rows, W)
        expected = np.concatenate([data["images"][i] for i in run.indices], axis=0)
        np.testing.assert_array_equal(strip, expected)
        mask_strip = stitch(data["masks"], run)
        # narrow wells: the padding columns stay padding over the whole strip
        assert (mask_strip[:, run.width:] == -1).all()
        assert (strip[:, run.width:] == 0).all()
        assert (mask_strip[:, :run.width] >= 0).all()
    # a class axis stays in front of the rows
    probs = np.random.default_rng(4).random((len(data["ids"]), 3, H, W))
    strip = stitch(probs, runs[0])
    assert strip.shape == (3, runs[0].rows, W)
    np.testing.assert_array_equal(strip[:, H:2 * H], probs[runs[0].indices[1]])


def test_stitch_and_cut_work_on_torch_tensors():
    data = make_split(seed=5)
    runs = runs_from_split(data)
    x = torch.from_numpy(data["images"].astype(np.float32)).unsqueeze(1)  # (N, 1, H, W)
    for run in runs:
        strip = stitch(x, run)
        assert tuple(strip.shape) == (1, run.rows, W)
        torch.testing.assert_close(cut(strip, run), x[list(run.indices)], rtol=0, atol=0)


def test_cut_rejects_a_strip_of_the_wrong_length():
    run = Run(well=1, section=1, patches=(0, 1), indices=(0, 1), width=272)
    with pytest.raises(EchoCemError, match="the run needs 320"):
        cut(np.zeros((3, 480, W)), run)
    with pytest.raises(EchoCemError, match="exactly once"):
        cut_all([np.zeros((320, W))], [run], 3)


# --------------------------------------------------------------------------- windowed inference


def pixelwise(batch: torch.Tensor) -> torch.Tensor:
    """A deterministic function of each pixel alone: three 'probabilities' summing to 1."""
    s = torch.sigmoid(batch[:, :1])
    t = 0.5 * (1 + torch.tanh(batch[:, :1] * 0.3)) * (1 - s)
    return torch.cat([s, t, 1 - s - t], dim=1)


def test_window_starts_cover_the_strip():
    assert window_starts(800, 320, 160).tolist() == [0, 160, 320, 480]
    assert window_starts(900, 320, 160).tolist() == [0, 160, 320, 480, 580]
    assert window_starts(160, 320, 160).tolist() == [0]
    with pytest.raises(EchoCemError, match="stride_rows"):
        window_starts(800, 160, 320)


def test_depth_taper_is_positive_and_flat_at_the_strip_ends():
    w = depth_taper(160, first=False, last=False)
    assert (w > 0).all() and w.max() <= 1
    assert w[0] < 0.01 and w[79] > 0.99 and np.allclose(w, w[::-1])
    assert (depth_taper(160, first=True, last=False)[:80] == 1).all()
    assert (depth_taper(160, first=False, last=True)[80:] == 1).all()


@pytest.mark.parametrize("rows, window, stride", [(800, 320, 160), (900, 320, 96), (480, 160, 160),
                                                  (160, 320, 160), (640, 320, 320), (320, 160, 1)])
def test_windowed_predict_reproduces_a_per_pixel_answer_across_window_borders(rows, window, stride):
    strip = np.random.default_rng(rows + stride).normal(0, 2, (rows, W)).astype(np.float32)
    out = windowed_predict(strip, pixelwise, window, stride, batch_size=3)
    expected = pixelwise(torch.from_numpy(strip)[None, None])[0].numpy()
    assert out.shape == (3, rows, W) and out.dtype == np.float32
    # a weighted mean of equal values: equal up to float32 rounding
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-6)


def test_windowed_predict_blends_towards_window_centres():
    # predict answers each window with the row of its own centre: the blend at a row is a
    # taper-weighted mean of centres, so it stays within the centres of the covering windows
    rows = 640
    strip = np.tile(np.arange(rows, dtype=np.float32)[:, None], (1, 8))

    def centre(batch):
        c = batch[:, :, batch.shape[2] // 2: batch.shape[2] // 2 + 1, :1]
        return c.expand(-1, -1, batch.shape[2], batch.shape[3]).clone()

    out = windowed_predict(strip, centre, 320, 160)[0, :, 0]
    centres = np.array([160, 320, 480], dtype=np.float32)
    # strip top and bottom halves are covered by one window at full weight
    np.testing.assert_allclose(out[:160], 160)
    np.testing.assert_allclose(out[480:], 480)
    # two windows with mirrored weights about row 239.5 (the taper is symmetric about its middle)
    assert out[239] + out[240] == pytest.approx(480, abs=1e-3)
    assert 160 < out[200] < 240 < out[280] < 320
    assert (np.diff(out) >= -1e-4).all() and out.min() >= centres.min() and out.max() <= centres.max()


def test_windowed_predict_takes_several_input_channels_and_checks_the_output():
    strip = np.random.default_rng(0).normal(size=(2, 480, W)).astype(np.float32)
    out = windowed_predict(strip, lambda b: b[:, :1].repeat(1, 3, 1, 1), 320, 160)
    np.testing.assert_allclose(out, np.repeat(strip[:1], 3, axis=0), atol=1e-6)
    with pytest.raises(EchoCemError, match="predict returned shape"):
        windowed_predict(strip, lambda b: b[:, :, :10], 320, 160)


def test_flip_tta_equals_the_plain_prediction_for_a_flip_equivariant_model():
    batch = torch.randn(4, 1, 160, W)
    torch.testing.assert_close(flip_tta(pixelwise)(batch), pixelwise(batch))

    def time_cumsum(b):  # depends on the time axis (columns) only: equivariant under depth flips
        return torch.cumsum(b, dim=-1)

    torch.testing.assert_close(flip_tta(time_cumsum)(batch), time_cumsum(batch))


def test_flip_tta_averages_with_the_depth_flipped_prediction():
    batch = torch.randn(2, 1, 160, W)

    def depth_cumsum(b):  # not depth-flip equivariant
        return torch.cumsum(b, dim=-2)

    expected = (depth_cumsum(batch) + depth_cumsum(batch.flip(2)).flip(2)) / 2
    torch.testing.assert_close(flip_tta(depth_cumsum)(batch), expected)
    assert not torch.allclose(expected, depth_cumsum(batch))


def test_ensemble_and_average_probs_are_weighted_means():
    batch = torch.zeros(1, 1, 4, 5)
    ones = lambda b: torch.ones(b.shape[0], 3, *b.shape[2:])  # noqa: E731
    zeros = lambda b: torch.zeros(b.shape[0], 3, *b.shape[2:])  # noqa: E731
    assert torch.allclose(ensemble([ones, zeros])(batch), torch.full((1, 3, 4, 5), 0.5))
    assert torch.allclose(ensemble([ones, zeros], [3, 1])(batch), torch.full((1, 3, 4, 5), 0.75))
    a = np.full((2, 3, 4, 5), 0.2, dtype=np.float16)
    b = np.full((2, 3, 4, 5), 0.6, dtype=np.float32)
    np.testing.assert_allclose(average_probs([a, b]), 0.4, atol=1e-4)
    assert average_probs([a, b]).dtype == np.float32
    with pytest.raises(EchoCemError, match="shape"):
        average_probs([a, b[:1]])
    with pytest.raises(EchoCemError, match="weights"):
        ensemble([ones, zeros], [1, -1])


def test_predict_runs_gives_per_patch_probabilities_with_background_padding():
    data = make_split(seed=6)
    runs = runs_from_split(data)
    x = data["images"].astype(np.float32) / 100
    seen = []
    probs = predict_runs(x, data["widths"], runs, flip_tta(pixelwise), window_rows=320, stride_rows=96,
                         batch_size=2, progress=seen.append)
    assert len(seen) == len(runs) and set(seen) == set(runs)  # each run once, when it is complete
    expected = pixelwise(torch.from_numpy(x)[:, None]).numpy()
    for i, wd in enumerate(data["widths"]):
        np.testing.assert_allclose(probs[i, :, :, :wd], expected[i, :, :, :wd], atol=1e-6)
        assert (probs[i, 0, :, wd:] == 1).all() and (probs[i, 1:, :, wd:] == 0).all()


def test_windows_of_several_strips_share_batches_and_give_each_strip_its_own_answer():
    rng = np.random.default_rng(11)
    strips = [rng.normal(size=(rows, 24)).astype(np.float32) for rows in (160, 160, 480, 160, 320, 160)]
    shapes = []

    def centre_weighted(batch):
        # depends on the whole window (its mean), so the blend of overlapping windows shows
        return (batch - batch.mean(dim=(2, 3), keepdim=True)).repeat(1, 3, 1, 1)

    def recording(batch):
        shapes.append(tuple(batch.shape))
        return centre_weighted(batch)

    done = []
    together = windowed_predict_many(strips, recording, 320, 160, batch_size=4, done=done.append)
    # 160-row windows: 4 strips in one batch of 4 patches; 320-row windows (2 of the 480-row
    # strip, 1 of the 320-row one): 2 per batch, as 2 patches' worth of rows each
    assert sorted(shapes) == sorted([(4, 1, 160, 24), (2, 1, 320, 24), (1, 1, 320, 24)])
    assert sorted(done) == list(range(6))
    for strip, out in zip(strips, together):
        np.testing.assert_allclose(out, windowed_predict(strip, centre_weighted, 320, 160, batch_size=1),
                                   atol=1e-6)


# --------------------------------------------------------------------------- training windows


def test_border_windows_cross_a_border_and_stay_inside_their_run():
    runs = runs_from_split(make_split(seed=7))
    win = border_windows(runs, np.random.default_rng(0), window_rows=160, per_border=3, margin=16)
    n_borders = sum(len(r.borders) for r in runs)
    assert len(win) == 3 * n_borders
    for k, s, b in win[["run", "start", "border"]].itertuples(index=False):
        run = runs[k]
        assert b in run.borders
        assert 0 <= s and s + 160 <= run.rows
        assert s + 16 <= b <= s + 160 - 16  # at least 16 rows on each side of the border
    # one-patch runs give no window; the draw is reproducible and varies with the seed
    assert not set(win["run"]) & {k for k, r in enumerate(runs) if r.n_patches == 1}
    again = border_windows(runs, np.random.default_rng(0), window_rows=160, per_border=3, margin=16)
    assert win.equals(again)
    other = border_windows(runs, np.random.default_rng(1), window_rows=160, per_border=3, margin=16)
    assert not win["start"].equals(other["start"])


def test_long_windows_skip_runs_that_are_too_short():
    runs = runs_from_split(make_split(seed=8))
    win = border_windows(runs, np.random.default_rng(0), window_rows=480, margin=32)
    assert set(win["run"]) == {k for k, r in enumerate(runs) if r.rows >= 480}
    assert ((win["start"] >= 0) & (win["start"] + 480 <= [runs[k].rows for k in win["run"]])).all()


def test_training_windows_are_slices_of_the_strips():
    data = make_split(seed=9)
    runs = runs_from_split(data)
    out = training_windows(data, runs, np.random.default_rng(3), window_rows=160, per_border=2)
    m = len(out["start"])
    assert out["images"].shape == (m, 160, W) and out["masks"].shape == (m, 160, W)
    assert out["images"].dtype == np.int16 and out["masks"].dtype == np.int8
    for j in range(m):
        run = runs[out["run"][j]]
        s = out["start"][j]
        np.testing.assert_array_equal(out["images"][j], stitch(data["images"], run)[s:s + 160])
        np.testing.assert_array_equal(out["masks"][j], stitch(data["masks"], run)[s:s + 160])
        assert out["widths"][j] == run.width and out["well"][j] == run.well
    # narrow windows keep their padding
    narrow = out["widths"] == 160
    assert narrow.any() and (out["masks"][narrow][:, :, 160:] == -1).all()


def test_window_index_gathers_from_tensors_with_a_channel_axis():
    data = make_split(seed=10)
    runs = runs_from_split(data)
    win = border_windows(runs, np.random.default_rng(5), window_rows=160)
    patch_idx, row_idx = window_index(runs, win, 160)
    x = torch.from_numpy(data["images"].astype(np.float32)).unsqueeze(1)
    gathered = x[torch.from_numpy(patch_idx), :, torch.from_numpy(row_idx)].permute(0, 2, 1, 3)
    for j, (k, s) in enumerate(win[["run", "start"]].itertuples(index=False)):
        torch.testing.assert_close(gathered[j], stitch(x, runs[k])[:, s:s + 160], rtol=0, atol=0)
    bad = win.assign(start=runs[win["run"].iloc[0]].rows)
    with pytest.raises(EchoCemError, match="leaves run"):
        window_index(runs, bad.iloc[:1], 160)


# --------------------------------------------------------------------------- with a real network


def tiny_network_and_wells(seed: int, split_seed: int, wells: list[int]):
    """A small untrained U-Net (eval mode, one thread) and the patches of `wells` of a split."""
    from echocem.seg.unet import build_model, model_config

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    cfg = model_config({"encoder": "tu-mobilenetv3_small_050", "encoder_depth": 3,
                        "decoder_channels": [16, 8, 8], "encoder_weights_path": None})
    data = make_split(seed=split_seed)
    keep = np.isin(data["well"], wells)
    return build_model(cfg).eval(), {k: v[keep] for k, v in data.items()}


def test_patch_sized_windows_reproduce_per_patch_inference_of_a_network():
    """Windows of exactly one patch (window = stride = 160) are the old per-patch path."""
    from echocem.data.preprocess import fit_normalization, normalize
    from echocem.seg.sections import model_predictor
    from echocem.seg.unet import predict_proba

    # a one-patch section and a narrow well: 6 patches
    model, data = tiny_network_and_wells(seed=0, split_seed=12, wells=[2, 3])
    runs = runs_from_split(data)
    spec = fit_normalization(data["images"], data["widths"])
    reference = predict_proba(model, data["images"], data["widths"], spec, "cpu", batch_size=4)
    x = normalize(data["images"], data["widths"], spec)
    windowed = predict_runs(x, data["widths"], runs, model_predictor(model, "cpu"), window_rows=160,
                            stride_rows=160, batch_size=4)
    np.testing.assert_allclose(windowed, reference, atol=1e-5)
    # longer, overlapping windows see across borders: same shape and padding, other numbers
    wide = predict_runs(x, data["widths"], runs, model_predictor(model, "cpu"), window_rows=320,
                        stride_rows=160)
    assert wide.shape == reference.shape
    np.testing.assert_allclose(wide.sum(axis=1), 1.0, atol=1e-5)
    assert (wide[data["widths"] == 160][:, 0, :, 160:] == 1).all()


def test_chunks_hold_whole_runs_and_predict_like_the_whole_split():
    from echocem.seg.sections import chunk_runs

    data = make_split(seed=13)
    runs = runs_from_split(data)
    chunks = chunk_runs(runs, max_patches=4)
    # runs of 5, 3, 2, 1, 3, 2 patches: a 5-run alone (too long), then 3, then 2+1, then 3, then 2
    assert [[r.n_patches for r in local] for _, local in chunks] == [[5], [3], [2, 1], [3], [2]]
    x = data["images"].astype(np.float32) / 100
    whole = predict_runs(x, data["widths"], runs, pixelwise, 320, 160)
    out = np.full_like(whole, np.nan)
    for idx, local in chunks:
        out[idx] = predict_runs(x[idx], data["widths"][idx], local, pixelwise, 320, 160)
    np.testing.assert_array_equal(out, whole)
    with pytest.raises(EchoCemError, match="max_patches"):
        chunk_runs(runs, 0)


def test_the_flipped_view_averaged_with_the_plain_one_is_the_tta_prediction():
    """What ladder_predictions relies on: the main U-Net's TTA from its plain view (the
    sections rung) and its flipped view, the network run twice instead of three times."""
    from echocem.data.preprocess import fit_normalization
    from echocem.seg.context import Inference, predict_probs

    # runs of several patches: overlapping windows blend
    model, data = tiny_network_and_wells(seed=1, split_seed=14, wells=[1, 3])
    spec = fit_normalization(data["images"], data["widths"])

    def probs(**views):
        return predict_probs([model], data, spec, "cpu", Inference(sections=True, batch_size=4, **views))

    plain, flipped, tta = probs(tta=False), probs(tta=False, flipped=True), probs(tta=True)
    np.testing.assert_allclose(average_probs([plain, flipped]), tta, atol=1e-6)
    assert np.abs(flipped - plain).max() > 1e-3  # the flipped view is another prediction, not the plain one
    with pytest.raises(EchoCemError, match="one of tta, flipped"):
        Inference(sections=True, tta=True, flipped=True)

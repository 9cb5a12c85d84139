"""The loss ignores padding; augmentations keep image and mask aligned and never flip time."""
from __future__ import annotations

import torch

from echocem.seg.augment import augment_batch
from echocem.seg.loss import focal_dice_loss

H, W = 160, 272


def _target(n: int = 3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n, H, W), generator=g)
    y[0, :, 160:] = -1  # a narrow patch
    return y


def test_loss_ignores_padding_pixels():
    y = _target()
    logits = torch.randn(3, 3, H, W, generator=torch.Generator().manual_seed(1), requires_grad=True)
    loss = focal_dice_loss(logits, y, 0.5, 0.5, 2.0)
    loss.backward()
    assert torch.isfinite(loss)
    assert (logits.grad[0, :, :, 160:] == 0).all()  # no signal from padding
    assert (logits.grad[0, :, :, :160] != 0).any()
    # whatever the network says on padding, the loss is the same
    changed = logits.detach().clone()
    changed[0, :, :, 160:] = 1000 * torch.randn(3, H, W - 160)
    assert torch.equal(focal_dice_loss(changed, y, 0.5, 0.5, 2.0), loss.detach())


def test_loss_is_lower_for_the_right_answer_and_finite_when_everything_is_padding():
    y = _target()
    right = 10 * torch.nn.functional.one_hot(y.clamp_min(0), 3).permute(0, 3, 1, 2).float()
    wrong = right.roll(1, dims=1)
    assert focal_dice_loss(right, y, 0.5, 0.5, 2.0) < 0.05 < focal_dice_loss(wrong, y, 0.5, 0.5, 2.0)
    empty = torch.full((1, H, W), -1)
    assert torch.isfinite(focal_dice_loss(torch.randn(1, 3, H, W), empty, 0.5, 0.5, 2.0))


def _coordinate_batch(n: int):
    """Channel 0 encodes the time index (positive, increasing along columns), channel 1 the row;
    the label is a function of both, so alignment after augmentation can be checked exactly."""
    rows = torch.arange(H, dtype=torch.float32).view(1, 1, H, 1).expand(n, 1, H, W)
    cols = torch.arange(W, dtype=torch.float32).view(1, 1, 1, W).expand(n, 1, H, W)
    x = torch.cat([1 + cols, rows], dim=1).clone()
    y = ((cols[:, 0].long() // 20 + rows[:, 0].long() // 40) % 3).clone()
    widths = torch.tensor([272, 160] * (n // 2))
    pad = torch.arange(W)[None, :] >= widths[:, None]
    x[:, 0][pad[:, None, :].expand(n, H, W)] = 0
    y[pad[:, None, :].expand(n, H, W)] = -1
    return x, y


GEOMETRY_ONLY = {"depth_flip": 0.5, "max_shift_rows": 8, "max_shift_cols": 5, "gain": 0.0, "contrast": 0.0,
                 "noise_std": 0.0}


def test_geometry_moves_image_and_mask_together():
    x, y = _coordinate_batch(32)
    xa, ya = augment_batch(x, y, GEOMETRY_ONLY, torch.Generator().manual_seed(0))
    labelled = ya >= 0
    src_col = xa[:, 0].long() - 1
    src_row = xa[:, 1].long()
    expected = (src_col // 20 + src_row // 40) % 3
    assert labelled.float().mean() > 0.7
    assert torch.equal(ya[labelled], expected[labelled])
    # uncovered or padding pixels: image 0, label -1 (ignored by the loss)
    assert (xa[:, 0][~labelled] == 0).all()


def test_time_axis_is_never_flipped_but_depth_is():
    x, y = _coordinate_batch(64)
    xa, ya = augment_batch(x, y, GEOMETRY_ONLY, torch.Generator().manual_seed(1))
    labelled = ya >= 0
    for i in range(64):
        for r in range(0, H, 7):
            t = xa[i, 0, r][labelled[i, r]]  # time index of each labelled pixel of the row
            assert (t[1:] - t[:-1] == 1).all()  # still increasing, one step per column
    # depth: some samples have their row index decreasing down the patch
    first, last = xa[:, 1, 20, 100], xa[:, 1, 140, 100]
    assert (first > last).any() and (first < last).any()


def test_intensity_changes_only_the_image_channel_and_keep_padding_zero():
    x, y = _coordinate_batch(8)
    x[:, 0] = torch.where(y >= 0, torch.randn(8, H, W), torch.zeros(8, H, W))
    cfg = {"depth_flip": 0.0, "max_shift_rows": 0, "max_shift_cols": 0, "gain": 0.5, "contrast": 0.3,
           "noise_std": 0.2}
    xa, ya = augment_batch(x, y, cfg, torch.Generator().manual_seed(2))
    assert torch.equal(ya, y) and torch.equal(xa[:, 1], x[:, 1])
    assert not torch.allclose(xa[:, 0], x[:, 0])
    assert (xa[:, 0][y < 0] == 0).all()


def test_augmentation_is_reproducible_from_the_generator():
    x, y = _coordinate_batch(8)
    cfg = {**GEOMETRY_ONLY, "gain": 0.3, "contrast": 0.2, "noise_std": 0.1}
    a = augment_batch(x, y, cfg, torch.Generator().manual_seed(5))
    b = augment_batch(x, y, cfg, torch.Generator().manual_seed(5))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])

"""A physics-inspired simulator of EchoCem ultrasonic patches (the embedded default data).

Each section is one continuous depth strip (rows = depth, columns = time samples of
the echo), simulated whole and cut into 160-row patches, so neighbouring patches
join up as they do in the real data. A strip is the sum of:

- casing (label 2): the strongest echo, a nearly straight band of alternating-polarity
  stripes at columns ~15-40 (label band 15-17 px), amplitude 200-700, with a weak
  ringing tail to its right;
- TIE, third interface echo (label 1): a weaker oscillating wavelet whose column wanders
  smoothly with depth (piecewise-linear drifts and V-kinks plus a zigzag, 20-60 px per
  160 rows); label band 15-25 px; absent over some depth intervals, doubled over others;
- distractors, unlabelled: correlated background noise (std ~25), faint straight echo
  lines, a reverberation of the casing, a faint ghost of the TIE, single-row glitch lines
  across the full width; and a per-well gain.

Everything is vectorised over the strip (no per-pixel Python loop). Each section draws
from its own generator seeded by (seed, split, well, section), so a section's content
does not depend on which other wells are simulated.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
from scipy.ndimage import gaussian_filter1d

from echocem.data.layout import HEIGHT, MAX_WIDTH, SPLITS, stem
from echocem.io import EchoCemError

SPLIT_CODE = {"train": 1, "test": 2, "unlabeled": 3}
INT16_CLIP = 1000  # like the real data (about +-700, rare peaks beyond)


@dataclass
class Dataset:
    """A simulated dataset: per split {stem: image}, and the train masks {stem: mask}."""

    patches: dict[str, dict[str, np.ndarray]]
    labels: dict[str, np.ndarray]


def _uniform(rng: np.random.Generator, bounds: Any) -> float:
    lo, hi = bounds
    return float(rng.uniform(lo, hi))


def _smooth_walk(rng: np.random.Generator, n: int, step: float, sigma: float) -> np.ndarray:
    """A smooth random curve of length n (random walk, Gaussian-smoothed)."""
    walk = np.cumsum(rng.normal(0.0, step, n))
    return gaussian_filter1d(walk, sigma, mode="nearest")


def _wavelet(dist: np.ndarray, period: float, phase: float, half_width: float | np.ndarray,
             power: int = 2) -> np.ndarray:
    """Oscillation of `period` px under an envelope that falls off beyond `half_width`
    (Gaussian for power 2, flat-topped for power 6); float32 to halve the work."""
    r2 = np.square((dist / np.maximum(half_width, 1.0)).astype(np.float32))
    env = np.exp(-0.5 * (r2 if power == 2 else r2 * r2 * r2))
    return env * np.cos((2 * np.pi / period) * dist.astype(np.float32) + np.float32(phase))


def _tie_track(rng: np.random.Generator, n: int, lo: float, hi: float, phys: Mapping[str, Any]) -> np.ndarray:
    """TIE column per row: piecewise-linear drifts and kinks plus a zigzag, within [lo, hi]."""
    spacing = rng.uniform(40, 140)
    knots_at = np.arange(0.0, n + spacing, spacing)
    start = rng.uniform(lo, min(hi, lo + 0.6 * (hi - lo)))
    steps = rng.normal(0.0, phys["tie_wander"], knots_at.size)
    knots = start + np.cumsum(steps)
    # reflect into [lo, hi] so the wandering never sticks to a bound
    span = max(hi - lo, 1.0)
    knots = lo + np.abs(((knots - lo) + span) % (2 * span) - span)
    track = np.interp(np.arange(n), knots_at, knots)
    zig_amp = rng.uniform(0.0, phys["tie_zigzag"])
    track += zig_amp * np.sin(2 * np.pi * np.arange(n) / rng.uniform(60, 220) + rng.uniform(0, 2 * np.pi))
    track = gaussian_filter1d(track, 2.0, mode="nearest")
    return np.clip(track, lo, hi)


def _intervals(rng: np.random.Generator, n: int, prob: float, length: tuple[float, float]) -> np.ndarray:
    """Boolean per row: rows inside a random interval, drawn per 160 rows with probability `prob`."""
    out = np.zeros(n, dtype=bool)
    for _ in range(int(rng.binomial(max(1, n // HEIGHT), prob))):
        size = int(rng.uniform(*length))
        start = int(rng.integers(0, max(1, n - size // 2)))
        out[start:start + size] = True
    return out


def simulate_section(rng: np.random.Generator, n_patches: int, width: int, gain: float,
                     phys: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """One section: int16 strip (n_patches*160, width) and its int8 mask (0/1/2)."""
    n = n_patches * HEIGHT
    cols = np.arange(width, dtype=np.float64)[None, :]
    img = np.zeros((n, width), dtype=np.float32)
    mask = np.zeros((n, width), dtype=np.int8)

    # casing: straight strong ringing band (label 2)
    c_hw = float(rng.integers(phys["casing_half_width"][0], phys["casing_half_width"][1] + 1))
    c_center = rng.uniform(*phys["casing_column"]) + 0.6 * _smooth_walk(rng, n, 0.3, 25)[:, None]
    c_amp = _uniform(rng, phys["casing_amplitude"]) * (1 + 0.15 * np.tanh(_smooth_walk(rng, n, 0.2, 15)))[:, None]
    c_period = rng.uniform(4.0, 6.0)
    c_dist = cols - c_center
    img += c_amp * _wavelet(c_dist, c_period, rng.uniform(0, 2 * np.pi), c_hw, power=6)
    # ringing tail and a reverberation of the casing (unlabelled)
    tail = np.clip(c_dist - c_hw, 0, None)
    img += 0.08 * c_amp * np.exp(-tail / 12.0) * (c_dist > c_hw) * np.cos(2 * np.pi * c_dist / c_period)
    reverb_at = rng.uniform(2.0, 3.5) * (c_hw + 2) + c_center
    img += rng.uniform(*phys["reverb_fraction"]) * c_amp * _wavelet(cols - reverb_at, c_period, 0.0, 4.0)
    casing = np.abs(cols - np.rint(c_center)) <= c_hw  # exactly 2 h + 1 px per row

    # TIE: weaker wandering wavelet (label 1), sometimes absent, sometimes doubled
    t_hw = rng.uniform(*phys["tie_half_width"]) + 1.5 * np.tanh(_smooth_walk(rng, n, 0.2, 20))
    lo = float(c_center.mean()) + c_hw + 2
    hi = min(float(phys["tie_max_column"]), width - 14.0)
    t_center = _tie_track(rng, n, lo, hi, phys)
    t_amp = _uniform(rng, phys["tie_amplitude"]) * (0.7 + 0.3 * np.cos(_smooth_walk(rng, n, 0.05, 10)))
    t_period = rng.uniform(6.0, 9.0)
    present = ~_intervals(rng, n, phys["tie_absent_prob"], (60, 420))
    second = _intervals(rng, n, phys["tie_double_prob"], (60, 320)) & present
    offset = rng.uniform(25, 60) + 8 * np.tanh(_smooth_walk(rng, n, 0.3, 15))
    tracks = [(t_center, present), (np.minimum(t_center + offset, width - 10.0), second)]
    tie = np.zeros((n, width), dtype=bool)
    for center, on in tracks:
        dist = cols - center[:, None]
        ramp = gaussian_filter1d(on.astype(float), 4.0)[:, None]  # echoes fade in and out
        img += (t_amp * ramp[:, 0])[:, None] * _wavelet(dist, t_period, rng.uniform(0, 2 * np.pi),
                                                          t_hw[:, None] * 0.7, power=2)
        tie |= (np.abs(dist) <= t_hw[:, None]) & on[:, None]
    # faint ghost of the TIE further right (unlabelled)
    ghost = t_center + rng.uniform(35, 80)
    img += rng.uniform(0.1, 0.3) * t_amp[:, None] * present[:, None] * _wavelet(cols - ghost[:, None], t_period, 0.0, 5.0)

    # faint straight echo lines (unlabelled)
    for _ in range(int(rng.integers(1, 4))):
        at = rng.uniform(c_center.mean() + 20, width - 5) + 0.5 * _smooth_walk(rng, n, 0.3, 30)
        img += _uniform(rng, phys["echo_amplitude"]) * _wavelet(cols - at[:, None], rng.uniform(5, 9), 0.0, 4.0)

    # correlated background noise
    noise = rng.standard_normal((n, width), dtype=np.float32)
    noise = gaussian_filter1d(gaussian_filter1d(noise, 1.2, axis=0), 0.8, axis=1)
    img += phys["noise_std"] * noise / max(float(noise.std()), 1e-9)
    img *= gain

    # single-row glitch lines across the full width (after gain: an acquisition artefact)
    glitch_rows = np.flatnonzero(rng.random(n) < phys["glitch_rate"] / HEIGHT)
    img[glitch_rows] += rng.normal(0.0, 1.0, (glitch_rows.size, width)) * rng.uniform(80, 250, (glitch_rows.size, 1))

    mask[tie] = 1
    mask[casing] = 2
    return np.clip(np.rint(img), -INT16_CLIP, INT16_CLIP).astype(np.int16), mask


def simulate_dataset(cfg: Mapping[str, Any], seed: int) -> Dataset:
    """Simulate every split of the configured size; masks only for the train split."""
    size = cfg["size"]
    if size not in cfg["sizes"]:
        raise EchoCemError(f"params simulate.size: {size!r} is not one of {sorted(cfg['sizes'])}")
    counts = cfg["sizes"][size]
    narrow = set(cfg["narrow_wells"])
    phys = cfg["physics"]
    patches: dict[str, dict[str, np.ndarray]] = {s: {} for s in SPLITS}
    labels: dict[str, np.ndarray] = {}
    for split in SPLITS:
        for entry in counts.get(split, []):
            well = int(entry["well"])
            width = 160 if split == "train" and well in narrow else MAX_WIDTH
            gain = float(np.random.default_rng([seed, SPLIT_CODE[split], well]).uniform(*phys["well_gain"]))
            for section in range(1, int(entry["sections"]) + 1):
                rng = np.random.default_rng([seed, SPLIT_CODE[split], well, section])
                strip, mask = simulate_section(rng, int(entry["patches"]), width, gain, phys)
                for p in range(int(entry["patches"])):
                    name = stem(well, section, p)
                    rows = slice(p * HEIGHT, (p + 1) * HEIGHT)
                    patches[split][name] = strip[rows]
                    if split == "train":
                        labels[name] = mask[rows]
    return Dataset(patches=patches, labels=labels)


def random_suffixes(seed: int) -> dict[str, str]:
    """Download-like suffixes (e.g. `uDRk9z9`), fixed by the seed."""
    rng = np.random.default_rng([seed, 99])
    alphabet = np.array(list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"))
    return {k: "".join(rng.choice(alphabet, 7)) for k in (*SPLITS, "labels")}


def shuffled_label_order(stems: list[str], seed: int) -> list[str]:
    """The real label CSV is not sorted: write rows in a seed-fixed random order."""
    order = np.random.default_rng([seed, 98]).permutation(len(stems))
    return [sorted(stems)[i] for i in order]

"""Running a model at the scale where it is accurate.

A StereoNet matches on a 1/8 (or 1/16) cost volume whose bins are 8 (16) px wide, and learnt its
refinement on crops whose disparities span much of `maxdisp`: a pair whose disparities are a few
pixels wide (a small image, a short baseline, a far scene) falls inside one or two bins, and one
whose disparities pass `maxdisp` is clipped. Auto scale runs the pair once at its own size, reads
how far its disparities reach (the 99th percentile), resizes the pair so that reach lands at 0.85 of
`maxdisp` (within 0.5-4x and a pixel budget) and runs it again.

Chosen on 48 generated scenes of their own seed, never on the test split or a real pair
(docs/performance.md, "Auto scale"): the shipped model's EPE on those scenes at half size went
4.35 -> 2.53 px, at quarter size 5.62 -> 1.71, at full size 5.07 -> 4.92, at 1.5x 9.96 -> 7.85 (version
2, target 3/4). Version 7 does better with the pair enlarged further: 0.85, the best mean over the
factor x 0.9, 1, 1.1 (0.9 is better at exactly its factor, but x 1.1 takes it to the edge of maxdisp).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

TARGET_FRACTION = 0.85  # of maxdisp, where the pair's far-reaching disparities should land
QUANTILE = 99.0
SCALE_BOUNDS = (0.5, 4.0)
MAX_PIXELS = 4_000_000  # a 2560x1536 pair: the largest auto scale asks of memory and time
KEEP_WITHIN = 0.1  # a scale this close to 1 is not worth a second pass
# --multiscale: the per-pixel median of passes at these multiples of the chosen scale. A map moves by
# 0.9 px on average between scales 1% apart (the network's error is not smooth in the scale); the median
# of three keeps what they agree on. Chosen on the seed-77 scenes (docs/performance.md, "Multiscale"):
# half size 2.067 -> 1.978 px, own size 4.012 -> 3.832 px (before cleanup.py's 3x3 median); the mean of the
# same three, or of x0.95 / 1 / 1.05, did less.
MULTISCALE_FACTORS = (0.9, 1.0, 1.1)


def parse_scale(text: str) -> float | None:
    """`auto` -> None; a positive number -> that factor; anything else -> ValueError naming it."""
    if text.strip().lower() == "auto":
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"--scale {text!r} is neither 'auto' nor a number") from None
    if not (math.isfinite(value) and 0.1 <= value <= 8.0):
        raise ValueError(f"--scale {text!r} must be 'auto' or a factor from 0.1 to 8")
    return value


def reach(disp: np.ndarray) -> float:
    """How far a disparity map reaches: its 99th percentile over finite pixels (1 px at least)."""
    finite = disp[np.isfinite(disp)]
    return max(float(np.percentile(finite, QUANTILE)), 1.0) if finite.size else 1.0


def choose_scale(first: np.ndarray, maxdisp: float, fit: tuple[int, int] | None = None) -> float:
    """The factor that takes `first`'s reach to TARGET_FRACTION of maxdisp, bounded by SCALE_BOUNDS,
    MAX_PIXELS and, for a model of fixed input size `fit` (h, w), by that size (upscaling past it
    would only be resized back down); 1.0 when the answer is within KEEP_WITHIN of 1."""
    h, w = first.shape[:2]
    u = min(max(TARGET_FRACTION * maxdisp / reach(first), SCALE_BOUNDS[0]), SCALE_BOUNDS[1])
    if u > 1.0:
        u = max(within_fit(min(u, math.sqrt(MAX_PIXELS / (h * w))), (h, w), fit), 1.0)
    return 1.0 if abs(u - 1.0) < KEEP_WITHIN else u


def within_fit(u: float, shape: tuple[int, int], fit: tuple[int, int] | None) -> float:
    """u, or less where a pair of `shape` (h, w) scaled by it would not fit a fixed input `fit`."""
    return u if fit is None else min(u, fit[0] / shape[0], fit[1] / shape[1])


def scaled_size(h: int, w: int, u: float) -> tuple[int, int]:
    return max(1, round(h * u)), max(1, round(w * u))


def resize_view(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An image at (h, w): bilinear up, area-averaged down (no aliasing)."""
    h, w = size
    shrink = h < image.shape[0]
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def disparity_back(disp: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A disparity map computed at another width, brought to (h, w) with its values in that size's pixels.

    Down, each pixel takes the value at its centre (nearest, centre-aligned), not the area average: a
    disparity map is not an image, and averaging across an object's edge invents depths that lie on
    neither surface. On the 48 seed-77 scenes at half size (auto scale ~2.9x) EPE 2.105 -> 2.085 px,
    bad-2 13.7 -> 13.3%, bad-3 10.7 -> 10.3% (docs/performance.md, "Bringing a disparity back").
    Up, bilinear: the model's values are denser than the pixels asked for, nothing is invented."""
    factor = size[1] / disp.shape[1]
    h, w = size
    disp = disp.astype(np.float32)
    back = cv2.resize(disp, (w, h), interpolation=cv2.INTER_NEAREST_EXACT) if h < disp.shape[0] else resize_view(disp, size)
    return (back * np.float32(factor)).astype(np.float32)

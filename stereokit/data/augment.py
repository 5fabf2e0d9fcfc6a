"""Training augmentations known to help synthetic-to-real transfer, each off unless its setting asks.

They run on the cropped window (uint8 BGR views, never written in place) with the pair's own seeded
generator, so a run draws the same augmentations whatever the worker count. The disparity stays the
left view's ground truth: only the right view is disturbed (colour, occluders, rows), and a rescale
scales the disparity with the width.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from stereokit.config import AugmentConfig

Sample = dict[str, np.ndarray]


def scaled_window(sample: Sample, height: int, width: int, scale: float, rng: np.random.Generator) -> Sample:
    """A window of (height / scale, width / scale) resized to (height, width): the scene seen `scale`
    times closer to the camera, its disparities `scale` times larger (the exact width ratio)."""
    h, w = sample["disp"].shape[:2]
    wh, ww = min(h, max(8, round(height / scale))), min(w, max(8, round(width / scale)))
    top, left = int(rng.integers(0, h - wh + 1)), int(rng.integers(0, w - ww + 1))
    window = (slice(top, top + wh), slice(left, left + ww))
    out = dict(sample)
    for key in ("imgl", "imgr"):
        out[key] = cv2.resize(np.ascontiguousarray(sample[key][window]), (width, height), interpolation=cv2.INTER_LINEAR)
    # nearest, so a sparse map stays sparse and no value is blended across a depth edge
    disp = cv2.resize(np.ascontiguousarray(sample["disp"][window]), (width, height), interpolation=cv2.INTER_NEAREST)
    out["disp"] = disp * np.float32(width / ww)
    if "nonocc" in sample:
        out["nonocc"] = cv2.resize(np.ascontiguousarray(sample["nonocc"][window], np.uint8), (width, height), interpolation=cv2.INTER_NEAREST) > 0
    return out


def jitter_colour(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """One view's own brightness, contrast, gamma and per-channel gain (the two views drawn apart)."""
    x = image.astype(np.float32) / 255.0
    gamma = float(np.exp(rng.uniform(-strength, strength)))
    contrast = 1.0 + rng.uniform(-strength, strength)
    gains = 1.0 + rng.uniform(-strength / 2, strength / 2, size=3).astype(np.float32)
    bright = rng.uniform(-strength / 2, strength / 2)
    x = np.power(x, gamma)
    x = (x - x.mean()) * contrast + x.mean() + bright
    return np.clip(np.rint(255.0 * x * gains), 0, 255).astype(np.uint8)


def occlude(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A rectangle of the right view painted over with its mean colour or a copy of another of its
    regions: what the left view sees the right one cannot (the loss still asks for the left's truth)."""
    h, w = image.shape[:2]
    ph, pw = int(rng.integers(max(2, h // 16), max(3, h // 4))), int(rng.integers(max(2, w // 16), max(3, w // 4)))
    top, left = int(rng.integers(0, h - ph + 1)), int(rng.integers(0, w - pw + 1))
    out = image.copy()
    if rng.random() < 0.5:
        out[top:top + ph, left:left + pw] = image.reshape(-1, 3).mean(axis=0).astype(np.uint8)
    else:
        sy, sx = int(rng.integers(0, h - ph + 1)), int(rng.integers(0, w - pw + 1))
        out[top:top + ph, left:left + pw] = image[sy:sy + ph, sx:sx + pw]
    return out


def soften(image: np.ndarray, factor: float) -> np.ndarray:
    """The view shrunk `factor` times (area averaging) and enlarged back: the detail a camera image
    lacks once auto scale has enlarged it, at the same size and geometry."""
    h, w = image.shape[:2]
    small = cv2.resize(image, (max(1, round(w / factor)), max(1, round(h / factor))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def shift_rows(image: np.ndarray, dy: float) -> np.ndarray:
    """The view moved dy pixels down (sub-pixel, bilinear): a rig that is not perfectly rectified."""
    matrix = np.float32([[1, 0, 0], [0, 1, dy]])
    return cv2.warpAffine(image, matrix, (image.shape[1], image.shape[0]), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


@dataclass
class Augment:
    """The augmentations of one AugmentConfig, applied to a cropped window."""

    cfg: AugmentConfig

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        cfg = self.cfg
        out = dict(sample)
        if cfg.soften > 1 and rng.random() < cfg.soften_prob:
            factor = float(rng.uniform(1.0, cfg.soften))
            out["imgl"] = soften(np.ascontiguousarray(out["imgl"]), factor)
            out["imgr"] = soften(np.ascontiguousarray(out["imgr"]), factor)
        if cfg.colour_jitter > 0 and rng.random() < cfg.colour_jitter_prob:
            out["imgl"] = jitter_colour(out["imgl"], cfg.colour_jitter, rng)
            out["imgr"] = jitter_colour(out["imgr"], cfg.colour_jitter, rng)
        if cfg.occlusion_prob > 0 and rng.random() < cfg.occlusion_prob:
            out["imgr"] = occlude(np.asarray(out["imgr"]), rng)
        if cfg.vertical_jitter > 0:
            out["imgr"] = shift_rows(np.ascontiguousarray(out["imgr"]), float(rng.uniform(-cfg.vertical_jitter, cfg.vertical_jitter)))
        return out

"""The recipe's transforms, each a small callable on a sample dict {"imgl", "imgr", "disp"}.

Order for training: RandomCrop -> BgrToYuv444 -> ToTensor -> Normalize; evaluation skips the crop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import cv2
import numpy as np
import torch

from stereokit.config import DataConfig
from stereokit.data.augment import Augment, scaled_window
from stereokit.errors import DataError

Sample = dict[str, Any]


@dataclass
class RandomCrop:
    """The same window on left, right and disparity; with a scale range, a window of crop / scale
    resized to the crop (the disparity scaled with it)."""

    height: int
    width: int
    scale: tuple[float, float] = (1.0, 1.0)

    def __call__(self, sample: Sample, rng: np.random.Generator | None = None) -> Sample:
        h, w = sample["disp"].shape[:2]
        if h < self.height or w < self.width:
            raise DataError(f"sample of {w}x{h} is smaller than the crop {self.width}x{self.height}; lower data.crop.")
        rng = rng or np.random.default_rng()
        if self.scale != (1.0, 1.0):
            # at least the crop's size back from the image: a window never needs more pixels than it has
            lo, hi = max(self.scale[0], self.height / h, self.width / w), self.scale[1]
            scale = float(np.exp(rng.uniform(np.log(lo), np.log(max(lo, hi)))))
            return scaled_window(sample, self.height, self.width, scale, rng)
        top = int(rng.integers(0, h - self.height + 1))
        left = int(rng.integers(0, w - self.width + 1))
        window = (slice(top, top + self.height), slice(left, left + self.width))
        return {k: (v[window] if k in ("imgl", "imgr", "disp", "nonocc") else v) for k, v in sample.items()}


@dataclass
class BgrToYuv444:
    """Full-resolution YUV (BT.601, OpenCV's COLOR_BGR2YUV): what the deployed model's input is.

    rgb_input: the images arrive as RGB rather than OpenCV's BGR.
    """

    rgb_input: bool = False

    def __call__(self, sample: Sample) -> Sample:
        code = cv2.COLOR_RGB2YUV if self.rgb_input else cv2.COLOR_BGR2YUV
        return {**sample, "imgl": cv2.cvtColor(sample["imgl"], code), "imgr": cv2.cvtColor(sample["imgr"], code)}


class ToTensor:
    """HxWx3 uint8 -> 3xHxW float32; disparity HxW -> 1xHxW."""

    def __call__(self, sample: Sample) -> Sample:
        out = dict(sample)
        for key in ("imgl", "imgr"):
            out[key] = torch.from_numpy(np.ascontiguousarray(sample[key].transpose(2, 0, 1))).float()
        out["disp"] = torch.from_numpy(np.ascontiguousarray(sample["disp"], dtype=np.float32))[None]
        return out


@dataclass
class Normalize:
    mean: float = 128.0
    std: float = 128.0

    def __call__(self, sample: Sample) -> Sample:
        return {**sample, "imgl": (sample["imgl"] - self.mean) / self.std, "imgr": (sample["imgr"] - self.mean) / self.std}


@dataclass
class Pipeline:
    """The crop (on views, so a packed record copies only the window) and the steps after it."""

    crop: RandomCrop | None
    steps: list[Callable[[Sample], Sample]]
    augment: Augment | None = None

    def window(self, sample: Sample, rng: np.random.Generator | None = None) -> Sample:
        rng = rng or np.random.default_rng()
        sample = self.crop(sample, rng) if self.crop is not None else sample
        return self.augment(sample, rng) if self.augment is not None else sample

    def finish(self, sample: Sample) -> Sample:
        for step in self.steps:
            sample = step(sample)
        return sample

    def __call__(self, sample: Sample, rng: np.random.Generator | None = None) -> Sample:
        return self.finish(self.window(sample, rng))


def build_transform(cfg: DataConfig, train: bool) -> Pipeline:
    crop = RandomCrop(*cfg.crop, scale=cfg.augment.scale) if train else None
    augment = Augment(cfg.augment) if train and cfg.augment.active else None
    return Pipeline(crop, [BgrToYuv444(cfg.rgb_input), ToTensor(), Normalize(cfg.mean, cfg.std)], augment)


def preprocess_image(image: np.ndarray, cfg: DataConfig) -> torch.Tensor:
    """One HxWx3 uint8 image -> [1, 3, H, W] model input, exactly as the dataset prepares it."""
    code = cv2.COLOR_RGB2YUV if cfg.rgb_input else cv2.COLOR_BGR2YUV
    yuv = torch.from_numpy(np.ascontiguousarray(cv2.cvtColor(image, code).transpose(2, 0, 1))).float()
    return ((yuv - cfg.mean) / cfg.std)[None]

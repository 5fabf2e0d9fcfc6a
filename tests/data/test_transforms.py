from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from stereokit.config import DataConfig
from stereokit.data.transforms import BgrToYuv444, Normalize, RandomCrop, ToTensor, build_transform, preprocess_image
from stereokit.errors import DataError


def _sample(h: int = 40, w: int = 60) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "imgl": rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
        "imgr": rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
        "disp": np.arange(h * w, dtype=np.float32).reshape(h, w),
    }


def test_random_crop_takes_the_same_window_everywhere() -> None:
    sample = _sample()
    out = RandomCrop(16, 32)(sample, np.random.default_rng(1))
    assert out["disp"].shape == (16, 32) and out["imgl"].shape == (16, 32, 3)
    top, left = divmod(int(out["disp"][0, 0]), 60)
    assert np.array_equal(out["imgl"], sample["imgl"][top : top + 16, left : left + 32])
    assert np.array_equal(out["imgr"], sample["imgr"][top : top + 16, left : left + 32])
    with pytest.raises(DataError, match="smaller than the crop"):
        RandomCrop(64, 32)(sample)


def test_yuv_normalise_to_tensor() -> None:
    sample = _sample()
    yuv = BgrToYuv444()(sample)
    assert np.array_equal(yuv["imgl"], cv2.cvtColor(sample["imgl"], cv2.COLOR_BGR2YUV))
    rgb = BgrToYuv444(rgb_input=True)(sample)
    assert np.array_equal(rgb["imgl"], cv2.cvtColor(sample["imgl"][..., ::-1].copy(), cv2.COLOR_BGR2YUV))
    tensors = Normalize()(ToTensor()(yuv))
    assert tensors["imgl"].shape == (3, 40, 60) and tensors["disp"].shape == (1, 40, 60)
    expected = (torch.from_numpy(yuv["imgl"]).permute(2, 0, 1).float() - 128) / 128
    assert torch.equal(tensors["imgl"], expected)


def test_train_and_eval_transforms_and_single_image_preprocess() -> None:
    cfg = DataConfig(crop=(32, 32))
    sample = _sample()
    train = build_transform(cfg, train=True)(sample, np.random.default_rng(0))
    assert train["imgl"].shape == (3, 32, 32)
    full = build_transform(cfg, train=False)(sample)
    assert full["imgl"].shape == (3, 40, 60)
    assert torch.equal(preprocess_image(sample["imgl"], cfg)[0], full["imgl"])

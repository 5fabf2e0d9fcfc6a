from __future__ import annotations

import math

import torch

from stereokit.engine.metrics import StereoMetrics, per_image_errors


def test_epe_and_bad_k_on_hand_made_tensors() -> None:
    gt = torch.tensor([[[[1.0, 2.0], [3.0, 0.0]]], [[[10.0, 10.0], [70.0, 5.0]]]])
    pred = torch.tensor([[[[1.5, 4.0], [3.0, 9.0]]], [[[14.0, 10.0], [0.0, 5.5]]]])
    epe, bad1, bad3, pixels = per_image_errors(pred, gt, maxdisp=64)
    # image 0: valid 1, 2, 3 (0 is invalid): errors 0.5, 2, 0
    # image 1: valid 10, 10, 5 (70 >= maxdisp): errors 4, 0, 0.5
    assert pixels.tolist() == [3, 3]
    assert torch.allclose(epe, torch.tensor([2.5 / 3, 4.5 / 3]))
    assert torch.allclose(bad1, torch.tensor([1 / 3, 1 / 3]))
    assert torch.allclose(bad3, torch.tensor([0.0, 1 / 3]))


def test_mean_over_images_not_over_pixels() -> None:
    metrics = StereoMetrics(maxdisp=64)
    gt = torch.ones(2, 1, 2, 2) * 10
    gt[1, 0, 0, :] = 0  # the second image has only 2 valid pixels
    pred = gt + torch.tensor([1.0, 3.0]).view(2, 1, 1, 1)
    metrics.update(pred, gt, torch.tensor([0, 1]))
    s = metrics.summary()
    assert math.isclose(s["epe"], 2.0) and s["pixels"] == 6 and s["images"] == 2


def test_uneven_batches_and_duplicates_equal_the_global_value() -> None:
    torch.manual_seed(0)
    gt = torch.rand(7, 1, 8, 8) * 80
    pred = gt + torch.randn(7, 1, 8, 8) * 2
    whole = StereoMetrics(64)
    whole.update(pred, gt, torch.arange(7))
    parts = StereoMetrics(64)
    for idx in ([0, 1, 2], [3], [4, 5], [6, 0]):  # the last batch repeats image 0, as sampler padding does
        i = torch.tensor(idx)
        parts.update(pred[i], gt[i], i)
    assert parts.summary() == whole.summary()


def test_images_without_valid_pixels_are_skipped() -> None:
    metrics = StereoMetrics(64)
    metrics.update(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), torch.tensor([0]))
    assert metrics.summary()["images"] == 0 and math.isnan(metrics.summary()["epe"])

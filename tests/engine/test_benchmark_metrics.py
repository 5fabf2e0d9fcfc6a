from __future__ import annotations

import numpy as np
import pytest

from stereokit.engine.metrics import BenchmarkMetrics


def test_metrics_match_a_hand_computed_map() -> None:
    gt = np.array([[10.0, 100.0, 50.0, 0.0]], np.float32)
    pred = np.array([[13.5, 104.0, 51.5, 9.0]], np.float32)
    mask = gt > 0
    m = BenchmarkMetrics()
    one = m.update(pred, gt, mask)
    # errors 3.5, 4.0, 1.5 over three valid pixels
    assert one["epe"] == pytest.approx(9.0 / 3)
    assert one["bad1"] == pytest.approx(1.0) and one["bad2"] == pytest.approx(2 / 3) and one["bad3"] == pytest.approx(2 / 3)
    # D1 needs > 3 px AND > 5% of the truth: 3.5 > 0.5 yes; 4.0 > 5.0 no; 1.5 no
    assert one["d1_all"] == pytest.approx(1 / 3)


def test_per_image_and_pooled_reductions_differ_as_defined() -> None:
    m = BenchmarkMetrics()
    m.update(np.array([[5.0]]), np.array([[1.0]]), np.array([[True]]))  # one pixel, error 4 (bad-3)
    m.update(np.zeros((1, 3)) + 1, np.ones((1, 3)), np.ones((1, 3), bool))  # three perfect pixels
    s = m.summary()
    assert s["bad3"] == pytest.approx(0.5)  # mean over images of 1.0 and 0.0
    assert s["pooled"]["bad3"] == pytest.approx(0.25)  # 1 of 4 pixels
    assert s["epe"] == pytest.approx(2.0) and s["pooled"]["epe"] == pytest.approx(1.0)
    assert s["pixels"] == 4 and s["images"] == 2

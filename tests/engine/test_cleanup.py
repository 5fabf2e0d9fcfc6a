"""infer's clean-up: the strip raised first, then a 3x3 median that takes out lone outliers and keeps edges."""

from __future__ import annotations

import cv2
import numpy as np

from stereokit.engine.cleanup import clean_disparity
from stereokit.engine.out_of_view import raise_out_of_view


def test_a_lone_outlier_goes_and_an_edge_stays() -> None:
    disp = np.full((20, 60), 10.0, dtype=np.float32)
    disp[:, 40:] = 30.0          # an object's edge: kept where it is
    disp[8, 25] = 90.0           # one wild pixel: gone
    cleaned = clean_disparity(disp)
    assert cleaned.dtype == np.float32 and cleaned.shape == disp.shape
    assert cleaned[8, 25] == 10.0
    np.testing.assert_array_equal(cleaned[:, 12:40], 10.0)
    np.testing.assert_array_equal(cleaned[:, 40:], 30.0)


def test_the_strip_is_raised_before_the_median() -> None:
    rng = np.random.default_rng(5)
    disp = rng.uniform(0.0, 40.0, (16, 64)).astype(np.float32)
    np.testing.assert_array_equal(clean_disparity(disp), cv2.medianBlur(raise_out_of_view(disp), 3))
    assert not np.array_equal(clean_disparity(disp), cv2.medianBlur(disp, 3))

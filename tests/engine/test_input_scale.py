"""Auto scale: which factor it picks for a pair, within which limits, and that disparities come back
in the pair's own pixels."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stereokit.engine.input_scale import (MAX_PIXELS, SCALE_BOUNDS, TARGET_FRACTION, choose_scale, disparity_back,
                                          parse_scale, reach, resize_view, within_fit)


def _ramp(h: int, w: int, top: float) -> np.ndarray:
    """A disparity map rising left to right from 0 to `top`."""
    return np.tile(np.linspace(0, top, w, dtype=np.float32), (h, 1))


def test_parse_scale_takes_auto_or_a_factor_and_names_what_it_refuses() -> None:
    assert parse_scale("auto") is None and parse_scale(" AUTO ") is None
    assert parse_scale("1") == 1.0 and parse_scale("2.5") == 2.5
    for bad in ("abc", "0", "-1", "nan", "inf", "20"):
        with pytest.raises(ValueError, match=repr(bad).replace("'", "")):
            parse_scale(bad)


def test_small_disparities_are_upscaled_towards_the_target_fraction_of_maxdisp() -> None:
    first = _ramp(100, 200, 50.0)
    u = choose_scale(first, 192.0)
    assert u == pytest.approx(TARGET_FRACTION * 192 / reach(first))
    assert 1.0 < u < SCALE_BOUNDS[1]
    assert reach(first) * u == pytest.approx(TARGET_FRACTION * 192)


def test_the_factor_stays_within_its_bounds_the_pixel_budget_and_a_fixed_input() -> None:
    assert choose_scale(_ramp(50, 100, 4.0), 192.0) == SCALE_BOUNDS[1]          # 36x wanted
    assert choose_scale(_ramp(50, 100, 2000.0), 192.0) == SCALE_BOUNDS[0]       # far past maxdisp
    big = _ramp(1000, 2000, 20.0)                                                # 2 MP: the budget allows sqrt(2)
    assert choose_scale(big, 192.0) == pytest.approx(math.sqrt(MAX_PIXELS / big.size))
    assert choose_scale(_ramp(100, 200, 20.0), 192.0, fit=(256, 512)) == pytest.approx(2.56)
    assert choose_scale(_ramp(250, 370, 20.0), 192.0, fit=(256, 512)) == 1.0     # 1.024: not worth a second pass


def test_a_pair_already_in_range_keeps_its_size() -> None:
    first = _ramp(64, 128, 170.0)
    assert choose_scale(first, 192.0) == 1.0
    assert reach(np.full((4, 4), np.nan, np.float32)) == 1.0


def test_disparity_comes_back_at_the_pairs_size_in_its_pixels() -> None:
    at_double = np.full((40, 80), 30.0, np.float32)
    back = disparity_back(at_double, (20, 40))
    assert back.shape == (20, 40) and back.dtype == np.float32
    np.testing.assert_allclose(back, 15.0, rtol=1e-6)
    up = disparity_back(np.full((10, 20), 5.0, np.float32), (25, 50))
    np.testing.assert_allclose(up, 12.5, rtol=1e-6)
    # an object's edge: brought down, every pixel lies on one surface or the other (an area average
    # invents depths between them), and each takes the value under its centre
    edge = np.full((60, 121), 60.0, np.float32)
    edge[:, 61:] = 12.0  # 3.025 source columns a pixel: pixel 19's centre is column 58.99, pixel 20's 62.01
    small = disparity_back(edge, (20, 40))
    near, far = np.float32(60.0 * 40 / 121), np.float32(12.0 * 40 / 121)
    assert set(np.unique(small).tolist()) == {near, far}
    assert small[0, 19] == near and small[0, 20] == far
    image = np.random.default_rng(0).integers(0, 255, (30, 60, 3), dtype=np.uint8)
    assert resize_view(image, (60, 120)).shape == (60, 120, 3) and resize_view(image, (15, 30)).shape == (15, 30, 3)


def test_within_fit_caps_a_factor_at_a_fixed_input() -> None:
    assert within_fit(3.0, (100, 200), None) == 3.0
    assert within_fit(3.0, (100, 200), (256, 512)) == pytest.approx(2.56)
    assert within_fit(2.0, (100, 200), (256, 512)) == 2.0

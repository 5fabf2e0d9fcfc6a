from __future__ import annotations

import numpy as np
import pytest

from stereokit.config import AugmentConfig, load_config
from stereokit.data.augment import Augment, jitter_colour, scaled_window, shift_rows, soften
from stereokit.data.synth import SceneOptions, render_scene
from stereokit.data.transforms import build_transform
from stereokit.errors import ConfigError


def _scene() -> dict[str, np.ndarray]:
    s = render_scene(np.random.default_rng(4), 96, 192, 32, SceneOptions(gain=0, offset=0, gamma=0, vignette=0, blur=0, noise=0))
    return {"imgl": s.left, "imgr": s.right, "disp": s.disp}


def test_a_rescaled_window_scales_the_disparity_with_the_width() -> None:
    sample = _scene()
    out = scaled_window(sample, 48, 96, 1.5, np.random.default_rng(0))
    assert out["imgl"].shape == (48, 96, 3) and out["disp"].shape == (48, 96)
    window_w = round(96 / 1.5)
    # values are the source's disparities times the exact width ratio (nearest: no blending)
    ratio = 96 / window_w
    source_values = np.unique(sample["disp"])
    scaled_back = np.unique(out["disp"]) / ratio
    assert np.isin(np.round(scaled_back, 3), np.round(source_values, 3)).all()


def test_a_rescale_keeps_a_sparse_map_sparse() -> None:
    sample = _scene()
    sparse = sample["disp"].copy()
    sparse[::2] = 0
    out = scaled_window({**sample, "disp": sparse}, 48, 96, 0.8, np.random.default_rng(1))
    assert 0.3 < (out["disp"] == 0).mean() < 0.7


def test_augmentations_touch_only_what_they_say_and_are_seeded() -> None:
    sample = _scene()
    cfg = AugmentConfig(colour_jitter=0.2, occlusion_prob=1.0, vertical_jitter=1.0)
    a = Augment(cfg)(sample, np.random.default_rng(3))
    b = Augment(cfg)(sample, np.random.default_rng(3))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert np.array_equal(a["disp"], sample["disp"])  # the left view's truth is kept
    assert not np.array_equal(a["imgr"], sample["imgr"])
    # the views are jittered apart: their mean brightness ratio moves
    ratio = lambda s: s["imgl"].mean() / s["imgr"].mean()  # noqa: E731
    assert abs(ratio(a) - ratio(sample)) > 1e-3


def test_row_shift_moves_the_rows_by_the_amount() -> None:
    image = np.zeros((20, 10, 3), np.uint8)
    image[10] = 200
    shifted = shift_rows(image, 2.0)
    assert shifted[12].mean() == 200 and shifted[10].mean() == 0
    assert jitter_colour(image, 0.0, np.random.default_rng(0)).mean() == pytest.approx(image.mean(), abs=1)


def test_the_recipe_has_no_augmentation_and_a_bad_range_is_refused() -> None:
    cfg = load_config(None)
    assert not cfg.data.augment.active
    assert build_transform(cfg.data, train=True).augment is None
    with pytest.raises(ConfigError, match="scale"):
        load_config(None, ["data.augment.scale=[1.5, 0.5]"])


def test_a_rescaled_pair_still_warps_onto_itself_by_its_scaled_disparity() -> None:
    """The warp check on an augmented sample: rescaling keeps the ground truth exact (up to resampling)."""
    import cv2

    s = render_scene(np.random.default_rng(9), 128, 256, 32, SceneOptions(gain=0, offset=0, gamma=0, vignette=0, blur=0, noise=0,
                                                                        min_objects=0, max_objects=0))
    out = scaled_window({"imgl": s.left, "imgr": s.right, "disp": s.disp}, 96, 192, 1.3, np.random.default_rng(2))
    h, w = out["disp"].shape
    xs = np.arange(w, dtype=np.float32)[None].repeat(h, 0) - out["disp"]
    ys = np.arange(h, dtype=np.float32)[:, None].repeat(w, 1)
    warped = cv2.remap(out["imgr"].astype(np.float32), xs, ys, cv2.INTER_LINEAR)
    inside = (xs > 1) & (xs < w - 2)
    error = np.abs(warped - out["imgl"].astype(np.float32)).max(-1)[inside]
    off = cv2.remap(out["imgr"].astype(np.float32), xs + 1.5, ys, cv2.INTER_LINEAR)
    error_off = np.abs(off - out["imgl"].astype(np.float32)).max(-1)[inside]
    assert np.median(error) < 0.5 * np.median(error_off)


def test_soften_takes_detail_from_both_views_alike_and_keeps_the_geometry() -> None:
    """Both views lose the same fine detail (a pair that auto scale enlarged), nothing moves, and the
    left view's ground truth is untouched."""
    sample = _scene()
    out = Augment(AugmentConfig(soften=3.0, soften_prob=1.0))(sample, np.random.default_rng(5))
    assert np.array_equal(out["disp"], sample["disp"])
    detail = lambda img: np.abs(np.diff(img.astype(np.float32), axis=1)).mean()  # noqa: E731
    for key in ("imgl", "imgr"):
        assert out[key].shape == sample[key].shape and out[key].dtype == np.uint8
        assert detail(out[key]) < 0.9 * detail(sample[key])
        # area shrink and linear enlarge keep each region's colour: a blur, not a shift
        assert abs(out[key].astype(np.float32).mean() - sample[key].astype(np.float32).mean()) < 1.0
    # one factor for both views, drawn from the pair's generator after the coin
    rng = np.random.default_rng(5)
    rng.random()
    factor = float(rng.uniform(1.0, 3.0))
    assert factor > 1.2
    for key in ("imgl", "imgr"):
        assert np.array_equal(out[key], soften(sample[key], factor))
    assert soften(sample["imgl"], 1.0).tolist() == sample["imgl"].tolist()
    assert AugmentConfig(soften=2.0).active and not AugmentConfig().active
    with pytest.raises(ConfigError, match="soften"):
        load_config(None, ["data.augment.soften=0.5"])

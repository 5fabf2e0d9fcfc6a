"""The predictor infer, eval --dataset and the benchmarks share: auto scale runs a pair with small
disparities where the shipped model is accurate, and says what it did."""

from __future__ import annotations

import cv2
import numpy as np

from stereokit.data.synth import render_scene
from stereokit.data.validity import valid_mask
from stereokit.engine.metrics import BenchmarkMetrics
from stereokit.services.predictors import open_predictor, weights_predictor
from stereokit.weights import load_shipped
from stereokit.weights.check import SHIPPED_SCENES


def test_auto_scale_beats_the_pairs_own_size_on_small_disparities() -> None:
    auto, native = open_predictor(), open_predictor(scale=1.0)
    scores = {"auto": BenchmarkMetrics(), "native": BenchmarkMetrics()}
    for i in range(2):  # fresh scenes of the shipped model's kind, at half size: disparities of 2-72 px
        scene = render_scene(np.random.default_rng([4242, i]), 256, 512, 192, SHIPPED_SCENES)
        left, right = (cv2.resize(v, (256, 128), interpolation=cv2.INTER_AREA) for v in (scene.left, scene.right))
        gt = cv2.resize(scene.disp, (256, 128), interpolation=cv2.INTER_NEAREST) * 0.5
        disp, how = auto(left, right)
        assert disp.shape == gt.shape and "auto scale" in how and "resized 256x128 to" in how
        scores["auto"].update(disp, gt, valid_mask(gt, 192))
        disp, how = native(left, right)
        assert "resized" not in how and "auto" not in how
        scores["native"].update(disp, gt, valid_mask(gt, 192))
    auto_epe, native_epe = scores["auto"].summary()["epe"], scores["native"].summary()["epe"]
    assert auto_epe < 0.8 * native_epe, (auto_epe, native_epe)


def test_a_fixed_factor_is_applied_and_named() -> None:
    scene = render_scene(np.random.default_rng([4242, 9]), 128, 256, 64, SHIPPED_SCENES)
    predictor = open_predictor(scale=2.0)
    disp, how = predictor(scene.left, scene.right)
    assert disp.shape == (128, 256) and "resized 256x128 to 512x256 (--scale 2)" in how
    assert predictor.last_scale == 2.0  # infer's range note and colours use maxdisp / 2 in the pair's pixels


def test_a_float_model_can_run_as_a_fixed_shape_model_pads() -> None:
    """bench_real holds a compiled model to its float model fed the same padded input."""
    scene = render_scene(np.random.default_rng([4242, 11]), 128, 256, 64, SHIPPED_SCENES)
    at_fit = weights_predictor(load_shipped(), 1.0, fit=(256, 384))
    at_fit.raw = True  # the padding alone: the clean-up's median would see past the crop in the by-hand map
    disp, how = at_fit(scene.left, scene.right)
    assert disp.shape == (128, 256) and "padded 256x128 to the model's 384x256 and cropped back" in how
    assert at_fit.fit == (256, 384)
    pad = lambda v: cv2.copyMakeBorder(v, 0, 128, 0, 128, cv2.BORDER_REPLICATE)  # noqa: E731
    own_size = open_predictor(scale=1.0)
    own_size.raw = True
    by_hand, _ = own_size(pad(scene.left), pad(scene.right))
    np.testing.assert_allclose(disp, by_hand[:128, :256], atol=1e-3)


def test_multiscale_is_the_median_of_three_passes_around_the_chosen_scale() -> None:
    scene = render_scene(np.random.default_rng([4242, 12]), 128, 256, 192, SHIPPED_SCENES)
    left, right = (cv2.resize(v, (128, 64), interpolation=cv2.INTER_AREA) for v in (scene.left, scene.right))
    one = open_predictor()
    one.raw = True
    single, _ = one(left, right)
    u = one.last_scale
    multi = open_predictor()
    multi.raw, multi.multiscale = True, True
    disp, how = multi(left, right)
    assert multi.last_scale == u and disp.shape == single.shape == (64, 128)
    assert "median of 3 passes at" in how and "x 0.9 / 1 / 1.1" in how and "auto scale" in how
    by_hand = []
    for factor in (0.9, 1.0, 1.1):
        fixed = open_predictor(scale=u * factor)
        fixed.raw = True
        by_hand.append(fixed(left, right)[0])
    np.testing.assert_array_equal(by_hand[1], single)
    np.testing.assert_allclose(disp, np.median(np.stack(by_hand), axis=0), atol=1e-5)
    assert not np.array_equal(disp, single)

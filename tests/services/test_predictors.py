"""The predictor infer, eval --dataset and the benchmarks share: auto scale runs a pair with small
disparities where the shipped model is accurate, and says what it did."""

from __future__ import annotations

import cv2
import numpy as np

from stereokit.data.synth import render_scene
from stereokit.data.validity import valid_mask
from stereokit.engine.metrics import BenchmarkMetrics
from stereokit.services.predictors import open_predictor
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

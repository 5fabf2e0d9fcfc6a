"""A small generated set every install can score a shipped model on: the card's `check_epe` is the
float model's EPE here, and the tests hold the installed weights to it."""

from __future__ import annotations

from typing import Callable

import numpy as np

from stereokit.data.synth import SceneOptions, render_scene
from stereokit.data.validity import valid_mask
from stereokit.engine.metrics import BenchmarkMetrics

# the shipped model's scene options (configs/shipped.yaml's synth line), on fresh seeds
SHIPPED_SCENES = SceneOptions(photo_share=0.5, object_curvature=0.08, foreground=(0.02, 0.75), background=(0.01, 0.25),
                              weak_share=0.05, repetitive_share=0.05)
CHECK_PAIRS, CHECK_SIZE, CHECK_MAXDISP, CHECK_SEED = 4, (256, 512), 192, 9001


def check_set_epe(predict: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> dict[str, float]:
    """EPE / bad-2 / bad-3 of `predict` (BGR pair -> disparity) over the check set, every pixel with 0 < gt < maxdisp."""
    metrics = BenchmarkMetrics()
    for i in range(CHECK_PAIRS):
        scene = render_scene(np.random.default_rng([CHECK_SEED, i]), *CHECK_SIZE, CHECK_MAXDISP, SHIPPED_SCENES)
        metrics.update(predict(scene.left, scene.right), scene.disp, valid_mask(scene.disp, CHECK_MAXDISP))
    summary = metrics.summary()
    return {k: float(summary[k]) for k in ("epe", "bad2", "bad3")}

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from stereokit.data.pfm import read_pfm
from stereokit.data.sceneflow import read_split
from stereokit.data.synth import render_scene, synth_sample_paths
from stereokit.services.synth import run_synth


def test_ground_truth_is_exact_at_non_occluded_pixels() -> None:
    """Warp the right image by the disparity: it must reproduce the left one where both see the surface."""
    scene = render_scene(np.random.default_rng(3), 128, 256, 48)
    h, w = scene.disp.shape
    xs = np.arange(w, dtype=np.float32)[None, :].repeat(h, 0) - scene.disp
    ys = np.arange(h, dtype=np.float32)[:, None].repeat(w, 1)
    warped = cv2.remap(scene.right.astype(np.float32), xs, ys, cv2.INTER_LINEAR)
    error = np.abs(warped - scene.left.astype(np.float32)).max(axis=-1)
    seen = scene.nonoccluded
    assert seen.mean() > 0.7
    assert np.median(error[seen]) <= 2.0
    assert np.percentile(error[seen], 95) <= 6.0
    # and the check is not vacuous: a wrong disparity breaks it
    wrong = cv2.remap(scene.right.astype(np.float32), xs + 3, ys, cv2.INTER_LINEAR)
    assert np.median(np.abs(wrong - scene.left.astype(np.float32)).max(axis=-1)[seen]) > 4.0


def test_scenes_have_sub_pixel_disparities_and_occlusions() -> None:
    scene = render_scene(np.random.default_rng(1), 128, 256, 48)
    frac = scene.disp - np.floor(scene.disp)
    assert (frac > 0.01).mean() > 0.5
    assert 0 < scene.disp.min() and scene.disp.max() < 48
    assert (~scene.nonoccluded).any()
    assert len(np.unique(scene.disp.round(0))) > 10


def test_tree_and_lists_have_sceneflow_layout(synth_tree: Path) -> None:
    train, note = read_split(synth_tree, "train")
    test, _ = read_split(synth_tree, "test")
    assert note is None and len(train) == 6 and len(test) == 3
    assert train[0] == synth_sample_paths("train", 0)
    assert test[0].left.startswith("FlyingThings3D/frames_finalpass/TEST/")
    assert test[0].disp.startswith("FlyingThings3D/disparity/TEST/") and test[0].disp.endswith(".pfm")
    image = cv2.imread(str(synth_tree / train[0].left))
    assert image.shape == (64, 128, 3)
    assert read_pfm(synth_tree / train[0].disp).shape == (64, 128)


def test_deterministic_for_a_seed_whatever_the_workers(tmp_path: Path, synth_tree: Path) -> None:
    out = tmp_path / "again"
    run_synth(out, num_train=6, num_test=3, height=64, width=128, maxdisp=24, seed=5, workers=2, show_progress=False)
    for rel in ("SceneFlow_finalpass_train.txt", synth_sample_paths("test", 2).left, synth_sample_paths("train", 5).disp):
        assert (out / rel).read_bytes() == (synth_tree / rel).read_bytes()
    other = tmp_path / "other"
    run_synth(out=other, num_train=1, num_test=0, height=64, width=128, maxdisp=24, seed=6, show_progress=False)
    rel = synth_sample_paths("train", 0).left
    assert (other / rel).read_bytes() != (synth_tree / rel).read_bytes()

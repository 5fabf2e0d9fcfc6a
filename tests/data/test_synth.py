from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from stereokit.data.pfm import read_pfm
from stereokit.data.sceneflow import read_split
import pytest

from stereokit.data.synth import Camera, SceneOptions, render_scene, synth_sample_paths, vignette_map
from stereokit.services.synth import run_synth


NO_CAMERA = SceneOptions(gain=0, offset=0, gamma=0, vignette=0, blur=0, noise=0)


def _warp(right: np.ndarray, disp: np.ndarray, shift: float = 0.0) -> np.ndarray:
    """The right view sampled at x - d: the left view's picture where both see the surface."""
    h, w = disp.shape
    xs = np.arange(w, dtype=np.float32)[None, :].repeat(h, 0) - disp + shift
    ys = np.arange(h, dtype=np.float32)[:, None].repeat(w, 1)
    return cv2.remap(right.astype(np.float32), xs, ys, cv2.INTER_LINEAR)


def _warp_error(left: np.ndarray, right: np.ndarray, disp: np.ndarray, shift: float = 0.0) -> np.ndarray:
    """|left - warped right| per pixel (max over colours)."""
    return np.abs(_warp(right, disp, shift) - left.astype(np.float32)).max(axis=-1)


def _assert_warp_exact(scene, seen_share: float) -> None:  # type: ignore[no-untyped-def]
    error = _warp_error(scene.left, scene.right, scene.disp)
    seen = scene.nonoccluded
    assert seen.mean() > seen_share
    # what is left is bilinear resampling of textures with detail near the pixel scale
    assert np.median(error[seen]) <= 3.0
    # and the check is not vacuous: a disparity wrong by one pixel is three times worse
    assert np.median(_warp_error(scene.left, scene.right, scene.disp, 1.0)[seen]) > 3 * max(np.median(error[seen]), 1.0)


def test_ground_truth_is_exact_at_non_occluded_pixels() -> None:
    """Warp the right image by the disparity: it must reproduce the left one where both see the surface."""
    _assert_warp_exact(render_scene(np.random.default_rng(3), 128, 256, 48, NO_CAMERA), 0.6)


def _undo(image: np.ndarray, camera: Camera) -> np.ndarray:
    """Radiance in [0, 255] from what `camera` recorded (no blur or noise to undo)."""
    h, w = image.shape[:2]
    v = (image.astype(np.float64) - camera.offset) / (255.0 * camera.gain)
    x = np.power(np.clip(v, 0, None), 1.0 / camera.gamma)
    return 255.0 * x / vignette_map(h, w, camera.vignette)[..., None]


def test_ground_truth_is_exact_under_each_views_own_camera() -> None:
    """The two views differ in gain, offset, gamma and vignetting; undo each and the warp matches again."""
    options = SceneOptions(gain=0.2, offset=10, gamma=0.2, vignette=0.3, blur=0, noise=0)
    scene = render_scene(np.random.default_rng(5), 128, 256, 48, options)
    left_cam, right_cam = scene.cameras
    assert abs(left_cam.gain - right_cam.gain) > 0.01 or abs(left_cam.gamma - right_cam.gamma) > 0.01
    # pixels where neither camera clipped (at 0 or 255) can be undone
    clipped = lambda im: (im.min(-1) <= 2) | (im.max(-1) >= 253)  # noqa: E731
    seen = scene.nonoccluded & ~clipped(scene.left) & ~clipped(_warp(scene.right, scene.disp))
    raw = _warp_error(scene.left, scene.right, scene.disp)
    undone = _warp_error(_undo(scene.left, left_cam), _undo(scene.right, right_cam), scene.disp)
    assert np.median(undone[seen]) <= 2.0
    assert np.median(undone[seen]) < np.median(raw[seen])  # the cameras really differ, and undoing them is what matches


def test_every_knob_changes_the_scene_and_noise_is_per_view() -> None:
    base = render_scene(np.random.default_rng(8), 64, 128, 24, NO_CAMERA)
    noisy = render_scene(np.random.default_rng(8), 64, 128, 24, SceneOptions(gain=0, offset=0, gamma=0, vignette=0, blur=0, noise=3))
    assert np.array_equal(base.disp, noisy.disp)
    assert 0.5 < np.abs(noisy.left.astype(float) - base.left).mean() < 4
    many = render_scene(np.random.default_rng(8), 64, 128, 24, SceneOptions(min_objects=0, max_objects=0))
    assert len(np.unique(many.disp.round(1))) > 1  # a slanted background alone still varies


@pytest.mark.parametrize("item, words", [
    ("min_objects=-1", "min_objects"),
    ("object_size=[0.5, 0.1]", "object_size"),
    ("foreground=[0.2, 1.5]", "foreground"),
    ("noise=-2", "noise"),
    ("slant=0.9", "slant"),
])
def test_bad_scene_options_get_one_sentence_and_nothing_is_written(tmp_path: Path, item: str, words: str) -> None:
    from stereokit.errors import StereokitError

    out = tmp_path / "synth"
    with pytest.raises(StereokitError, match=words):
        run_synth(out, num_train=2, num_test=1, height=64, width=128, maxdisp=24, options=SceneOptions.parse([item]), show_progress=False)
    assert not out.exists()


def test_a_disparity_range_wider_than_the_image_is_refused(tmp_path: Path) -> None:
    from stereokit.errors import StereokitError

    with pytest.raises(StereokitError, match="does not fit"):
        run_synth(tmp_path / "s", num_train=1, num_test=0, height=64, width=128, maxdisp=200, show_progress=False)
    assert not (tmp_path / "s").exists()


def test_scene_option_names_and_types_are_checked() -> None:
    with pytest.raises(ValueError, match="blurr"):
        SceneOptions.parse(["blurr=1"])
    with pytest.raises(ValueError, match="range"):
        SceneOptions.parse(["foreground=0.5"])
    assert SceneOptions.parse(["foreground=[0.2, 0.8]", "max_objects=3"]) == SceneOptions(foreground=(0.2, 0.8), max_objects=3)


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


PHOTO_SCENES = SceneOptions(gain=0, offset=0, gamma=0, vignette=0, blur=0, noise=0, photo_share=1.0, object_curvature=0.08)


def test_ground_truth_stays_exact_with_photo_textures_and_curved_objects() -> None:
    _assert_warp_exact(render_scene(np.random.default_rng(12), 128, 256, 48, PHOTO_SCENES), 0.5)


def test_photo_textures_are_cut_from_photographs_never_the_evaluation_pair() -> None:
    from stereokit.data.photos import EVALUATION_ONLY, PHOTOS, photo_texture

    assert not set(PHOTOS) & set(EVALUATION_ONLY)
    a = photo_texture(np.random.default_rng(1), 64, 96)
    assert a.shape == (64, 96, 3) and a.dtype == np.float32 and 0 <= a.min() and a.max() <= 255
    assert np.array_equal(a, photo_texture(np.random.default_rng(1), 64, 96))
    assert not np.array_equal(a, photo_texture(np.random.default_rng(2), 64, 96))


def test_photo_scenes_are_the_same_whatever_the_worker_count(tmp_path: Path) -> None:
    opts = SceneOptions.parse(["photo_share=0.7", "object_curvature=0.05"])
    run_synth(tmp_path / "a", num_train=3, num_test=1, height=64, width=128, maxdisp=24, workers=1, options=opts, show_progress=False)
    run_synth(tmp_path / "b", num_train=3, num_test=1, height=64, width=128, maxdisp=24, workers=2, options=opts, show_progress=False)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) >= 8
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel

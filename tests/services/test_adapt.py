"""Self-supervised adaptation: it writes a float stage the quantization flow takes, never keeps a
collapsed or diverged model, and bad input is one sentence."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from stereokit.data.synth import SceneOptions, render_scene
from stereokit.engine.photometric import self_supervised_loss, warp_right_to_left
from stereokit.errors import StereokitError
from stereokit.services.adapt import AdaptSettings, adapt_config, run_adapt
from stereokit.services.calibrate import run_calibrate
from stereokit.services.predictors import stage_predictor
from stereokit.weights import load_shipped
from tests.cli import assert_refused, run, tree_state


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pairs")
    for i in range(2):
        s = render_scene(np.random.default_rng(70 + i), 96, 192, 48, SceneOptions(photo_share=0.5, noise=1.0))
        cv2.imwrite(str(root / f"left{i:02d}.png"), s.left)
        cv2.imwrite(str(root / f"right{i:02d}.png"), s.right)
    return root


def test_the_photometric_loss_is_lowest_at_the_true_disparity() -> None:
    s = render_scene(np.random.default_rng(3), 64, 128, 24, SceneOptions(noise=0, blur=0, gain=0, offset=0, gamma=0, vignette=0))
    to = lambda im: torch.from_numpy(im[..., ::-1].copy()).permute(2, 0, 1)[None].float() / 255  # noqa: E731
    left, right, gt = to(s.left), to(s.right), torch.from_numpy(s.disp)[None, None]
    warped, in_frame = warp_right_to_left(right, gt)
    assert (warped - left).abs()[in_frame.expand_as(left)].median() < 0.02
    true = self_supervised_loss(left, right, gt, 0.0)[1]
    assert true < self_supervised_loss(left, right, gt + 2, 0.0)[1] and true < self_supervised_loss(left, right, gt * 0.7, 0.0)[1]


def test_adapt_writes_a_float_stage_that_calibration_takes(pairs: Path, tmp_path: Path) -> None:
    cfg = adapt_config(None, "shipped")
    assert cfg.model == load_shipped().model
    result = run_adapt(cfg, tmp_path / "run", "shipped", pairs, AdaptSettings(steps=4, eval_every=2, crop=(96, 192)), show_progress=False)
    assert result.best_score <= result.start_score
    record = json.loads((tmp_path / "run" / "adapt" / "stage.json").read_text())
    assert record["status"] == "finished" and record["details"]["pair_names"] == ["00", "01"]
    disp, _ = stage_predictor(tmp_path / "run", "adapt")(cv2.imread(str(pairs / "left00.png")), cv2.imread(str(pairs / "right00.png")))
    assert disp.shape == (96, 192)
    calibrated = run_calibrate(tmp_path / "run", show_progress=False, pairs=pairs)  # PTQ statistics from the same pairs
    assert calibrated.batches > 0
    assert json.loads((tmp_path / "run" / "calibration" / "stage.json").read_text())["inputs"][0]["path"] == "adapt/best.pt"


def test_a_diverging_learning_rate_is_caught_and_the_model_left_unchanged(pairs: Path, tmp_path: Path) -> None:
    settings = AdaptSettings(steps=30, lr=0.5, eval_every=1, crop=(96, 192), max_restores=2)
    with pytest.raises(StereokitError, match="adaptation diverged 3 times"):
        run_adapt(adapt_config(None, "shipped"), tmp_path / "run", "shipped", pairs, settings, show_progress=False)
    assert not (tmp_path / "run" / "adapt" / "best.pt").exists()


def test_bad_adapt_input_is_one_sentence(pairs: Path, tmp_path: Path) -> None:
    (tmp_path / "odd" / "left").mkdir(parents=True)
    (tmp_path / "odd" / "right").mkdir()
    cv2.imwrite(str(tmp_path / "odd" / "left" / "a.png"), np.zeros((64, 64, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "odd" / "right" / "b.png"), np.zeros((64, 64, 3), np.uint8))
    before = tree_state(tmp_path)
    assert_refused(run("train", "--stage", "adapt", "--init", "shipped", "--pairs", str(tmp_path / "odd"), "--run-dir", str(tmp_path / "r")),
                   "has no image of the same name")
    assert_refused(run("train", "--stage", "adapt", "--pairs", str(pairs), "--run-dir", str(tmp_path / "r")), "needs --init MODEL")
    assert_refused(run("train", "--stage", "adapt", "--init", "nothing", "--pairs", str(pairs), "--run-dir", str(tmp_path / "r")),
                   "not a shipped model")
    assert tree_state(tmp_path) == before and not (tmp_path / "r").exists()

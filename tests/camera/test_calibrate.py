"""Calibration on boards rendered through a known rig: the rig comes back, and rectified rows align."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stereokit.camera.calibrate import Detection, find_corners
from stereokit.camera.rectify import Rectifier
from stereokit.camera.rig import Board, load_rig
from stereokit.data.pairs import find_pairs, read_pair
from stereokit.services.rig import run_rig_calibrate
from tests.camera import boards

BOARD = Board(columns=boards.COLS, rows=boards.ROWS, square=boards.SQUARE)


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("rig")
    boards.render_pairs(root / "shots", poses=18, seed=1)
    run_rig_calibrate(root / "shots", "9x6", boards.SQUARE, root / "rig.yaml", show_progress=False)
    return root / "shots", root / "rig.yaml"


def test_calibration_recovers_the_rendered_rig(calibrated: tuple[Path, Path]) -> None:
    _, rig_path = calibrated
    rig = load_rig(rig_path)
    assert rig.K1[0][0] == pytest.approx(boards.K1[0, 0], rel=0.01)
    assert rig.K2[1][1] == pytest.approx(boards.K2[1, 1], rel=0.01)
    assert rig.baseline == pytest.approx(np.linalg.norm(boards.T), rel=0.01)
    assert np.allclose(rig.T, boards.T, atol=0.002)
    assert rig.rms < 0.5
    assert rig.rectified_dy.mean < 0.3
    assert rig.pairs_used == 18 and rig.image_size == (boards.W, boards.H)
    assert (rig_path.parent / "rig_check.png").is_file() and len(list((rig_path.parent / "corners").glob("*.png"))) == 18


def test_rectified_pairs_have_their_rows_aligned(calibrated: tuple[Path, Path]) -> None:
    shots, rig_path = calibrated
    rectify = Rectifier.of(load_rig(rig_path))
    dy = []
    for _, left_path, right_path in find_pairs(shots)[:6]:
        left, right = rectify(*read_pair(left_path, right_path))
        a, b = find_corners(left, BOARD), find_corners(right, BOARD)
        assert a is not None and b is not None
        dy.append(np.abs(a[:, 0, 1] - b[:, 0, 1]))
        # and the disparity is positive: the right camera sees the board further left
        assert (a[:, 0, 0] - b[:, 0, 0]).min() > 0
    assert np.mean(np.concatenate(dy)) < 0.3


def test_side_by_side_names_work_too_and_a_blank_pair_is_skipped(tmp_path: Path) -> None:
    boards.render_pairs(tmp_path / "shots", poses=8, seed=2, layout="names")
    import cv2

    cv2.imwrite(str(tmp_path / "shots" / "left99.png"), np.full((boards.H, boards.W, 3), 128, np.uint8))
    cv2.imwrite(str(tmp_path / "shots" / "right99.png"), np.full((boards.H, boards.W, 3), 128, np.uint8))
    result = run_rig_calibrate(tmp_path / "shots", "9x6", boards.SQUARE, tmp_path / "rig.yaml", show_progress=False)
    assert result.skipped == ["99"] and len(result.used) == 8
    assert result.focal_px > 0 and result.baseline == pytest.approx(0.06, rel=0.02)


def test_corner_detection_fails_cleanly_on_a_picture_without_a_board() -> None:
    assert find_corners(np.zeros((120, 160, 3), np.uint8), BOARD) is None
    assert not Detection("x", None, np.zeros((54, 1, 2), np.float32)).usable

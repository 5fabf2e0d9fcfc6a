"""A raw pair of a fronto-parallel textured wall rendered through a known rig: infer --rig gives
depth and a point cloud at the wall's distance; depth_mm.png round-trips."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from stereokit.camera.depth import decode_ply
from stereokit.camera.rig import Board, RectifiedError, make_rig, rig_yaml
from stereokit.data.pfm import read_pfm
from stereokit.data.synth import make_texture
from tests.camera import boards
from tests.cli import run

DEPTH = 1.0  # metres


def _known_rig():  # type: ignore[no-untyped-def]
    size = (boards.W, boards.H)
    R1, R2, P1, P2, Q, roi1, roi2 = cv2.stereoRectify(boards.K1, boards.D1, boards.K2, boards.D2, size, boards.R, boards.T.reshape(3, 1),
                                                      flags=cv2.CALIB_ZERO_DISPARITY, alpha=0)
    E = np.zeros((3, 3))
    return make_rig(image_size=size, K1=boards.K1, D1=boards.D1, K2=boards.K2, D2=boards.D2, R=boards.R, T=boards.T, E=E, F=E,
                    R1=R1, R2=R2, P1=P1, P2=P2, Q=Q, roi1=tuple(int(v) for v in roi1), roi2=tuple(int(v) for v in roi2),
                    board=Board(columns=9, rows=6, square=0.025), rms=0.0, rectified_dy=RectifiedError(mean=0.0, max=0.0),
                    camera_model="known", pairs_used=0)


def _raw_view(texture: np.ndarray, K: np.ndarray, D: np.ndarray, R: np.ndarray, P: np.ndarray, shift: float) -> np.ndarray:
    """What a raw camera records of a wall whose rectified left image is `texture`; the right view sees it `shift` px left."""
    ys, xs = np.mgrid[0:boards.H, 0:boards.W].astype(np.float32)
    pts = np.stack([xs.ravel(), ys.ravel()], 1)[:, None]
    rect = cv2.undistortPoints(pts, K, D, R=R, P=P).reshape(boards.H, boards.W, 2)
    margin = 100
    return cv2.remap(texture, rect[..., 0] + shift + margin, rect[..., 1] + margin, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def test_infer_with_a_rig_puts_a_wall_at_its_depth(tmp_path: Path) -> None:
    rig = _known_rig()
    (tmp_path / "rig.yaml").write_text(rig_yaml(rig))
    disparity = rig.focal_px * rig.baseline / DEPTH
    rng = np.random.default_rng(0)
    texture = np.clip(make_texture(rng, boards.H + 200, boards.W + 200, "dead_leaves"), 0, 255).astype(np.uint8)
    left = _raw_view(texture, boards.K1, boards.D1, rig.array("R1"), rig.array("P1"), 0.0)
    right = _raw_view(texture, boards.K2, boards.D2, rig.array("R2"), rig.array("P2"), disparity)
    cv2.imwrite(str(tmp_path / "l.png"), left)
    cv2.imwrite(str(tmp_path / "r.png"), right)
    result = run("infer", "--rig", str(tmp_path / "rig.yaml"), "--imgl", str(tmp_path / "l.png"), "--imgr", str(tmp_path / "r.png"),
                 "--max-depth", "3", "--save-path", str(tmp_path / "out"), "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["unit"] == "m" and info["focal_px"] == pytest.approx(rig.focal_px) and info["baseline"] == pytest.approx(0.06, rel=0.01)
    assert len(info["rig_sha256"]) == 64
    # the wall, away from the borders the rectification leaves black
    x, y, w, h = rig.roi1
    depth = read_pfm(tmp_path / "out" / "depth.pfm")
    inner = depth[y + h // 6: y + 5 * h // 6, x + w // 4: x + 5 * w // 6]
    assert np.median(inner) == pytest.approx(DEPTH, rel=0.02)
    points, colours = decode_ply((tmp_path / "out" / "cloud.ply").read_bytes())
    assert len(points) > 0.5 * boards.W * boards.H and (points[:, 2] <= 3.0).all() and colours.dtype == np.uint8
    assert np.median(points[:, 2]) == pytest.approx(DEPTH, rel=0.02)
    mm = cv2.imread(str(tmp_path / "out" / "depth_mm.png"), cv2.IMREAD_UNCHANGED)
    assert mm.dtype == np.uint16
    ok = (depth > 0) & (depth <= 3.0)
    assert np.abs(mm[ok].astype(np.float64) - depth[ok] * 1000).max() <= 0.5 + 1e-3
    assert (mm[~ok] == 0).all()

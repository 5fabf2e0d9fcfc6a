"""Chessboard pairs rendered through a known rig (pinhole + distortion), for calibration tests."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

W, H = 640, 480
K1 = np.array([[520.0, 0, 322.0], [0, 522.0, 243.0], [0, 0, 1]])
K2 = np.array([[515.0, 0, 316.0], [0, 517.0, 238.0], [0, 0, 1]])
D1 = np.array([-0.12, 0.05, 0.001, -0.0008, 0.0])
D2 = np.array([-0.10, 0.03, -0.0005, 0.001, 0.0])
R = cv2.Rodrigues(np.array([0.01, -0.02, 0.005]))[0]
T = np.array([-0.06, 0.001, 0.0005])  # metres: the right camera 6 cm to the right
COLS, ROWS, SQUARE = 9, 6, 0.025
PX = 40  # texture pixels per square


def _board_texture() -> np.ndarray:
    cells = np.indices((ROWS + 1, COLS + 1)).sum(0) % 2
    tex = np.kron(1 - cells, np.ones((PX, PX))).astype(np.float32) * 255
    return cv2.copyMakeBorder(tex, PX, PX, PX, PX, cv2.BORDER_CONSTANT, value=255)


def _ideal_pixels(K: np.ndarray, D: np.ndarray) -> np.ndarray:
    """For every pixel of the distorted image, where it lies in the ideal pinhole image."""
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float32)
    pts = np.stack([xs.ravel(), ys.ravel()], 1)[:, None]
    return cv2.undistortPoints(pts, K, D, None, K, criteria=(cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 20, 1e-6)).reshape(H, W, 2)


def render_pairs(out: Path, poses: int = 16, seed: int = 0, layout: str = "folders") -> list[tuple[np.ndarray, np.ndarray]]:
    """Write `poses` pairs (left/ and right/ folders, or leftNN/rightNN) and return the board poses."""
    rng = np.random.default_rng(seed)
    tex = _board_texture()
    ideal = [_ideal_pixels(K1, D1), _ideal_pixels(K2, D2)]
    # board point (X, Y) metres -> texture pixel: (X / SQUARE + 1) * PX, the corner (0, 0) at the first inner corner
    to_tex = np.array([[PX / SQUARE, 0, 2 * PX - 0.5], [0, PX / SQUARE, 2 * PX - 0.5], [0, 0, 1]])
    if layout == "folders":
        (out / "left").mkdir(parents=True, exist_ok=True)
        (out / "right").mkdir(parents=True, exist_ok=True)
    else:
        out.mkdir(parents=True, exist_ok=True)
    written = []
    for i in range(poses):
        rvec = rng.uniform(-0.45, 0.45, 3) * np.array([1, 1, 0.3])
        Rb = cv2.Rodrigues(rvec)[0]
        centre = np.array([COLS * SQUARE / 2, ROWS * SQUARE / 2, 0])
        tb = np.array([rng.uniform(-0.08, 0.05), rng.uniform(-0.06, 0.06), rng.uniform(0.4, 0.75)]) - Rb @ centre
        views = []
        for cam, (K, Rc, Tc) in enumerate(((K1, np.eye(3), np.zeros(3)), (K2, R, T))):
            Rw, tw = Rc @ Rb, Rc @ tb + Tc
            Hm = K @ np.column_stack([Rw[:, 0], Rw[:, 1], tw])  # board plane -> ideal pixel
            to_board = to_tex @ np.linalg.inv(Hm)
            p = ideal[cam].reshape(-1, 2)
            q = np.column_stack([p, np.ones(len(p))]) @ to_board.T
            mx = (q[:, 0] / q[:, 2]).reshape(H, W).astype(np.float32)
            my = (q[:, 1] / q[:, 2]).reshape(H, W).astype(np.float32)
            img = cv2.remap(tex, mx, my, cv2.INTER_AREA, borderMode=cv2.BORDER_CONSTANT, borderValue=110)
            img = np.clip(img * 0.8 + 20 + rng.normal(0, 1.5, img.shape), 0, 255).astype(np.uint8)
            views.append(cv2.cvtColor(img, cv2.COLOR_GRAY2BGR))
        names = (out / "left" / f"{i:02d}.png", out / "right" / f"{i:02d}.png") if layout == "folders" else \
            (out / f"left{i:02d}.png", out / f"right{i:02d}.png")
        for path, img in zip(names, views):
            cv2.imwrite(str(path), img)
        written.append((Rb, tb))
    return written

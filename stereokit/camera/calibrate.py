"""Stereo calibration from chessboard pairs, with OpenCV.

The camera model is chosen by what matters downstream, the rectified rows: each candidate below is
calibrated, rectified with zero disparity at infinity (CALIB_ZERO_DISPARITY), and scored by the mean
|y_left - y_right| of the board corners after rectification; the lowest wins. The RMS alone can look
good while the rows end up pixels apart (a joint fit trading intrinsics against extrinsics).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from stereokit.camera.rig import Board, RectifiedError, Rig, make_rig

_TERM = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 100, 1e-6)

# Candidate camera models: (name, per-camera calibrateCamera flags, stereoCalibrate flags).
# Intrinsics first per camera, then the extrinsics with them fixed, is the usual robust order; the
# joint refinement from that start can help when the views cover the image well.
CANDIDATES = (
    ("k1k2p1p2, intrinsics fixed", cv2.CALIB_FIX_K3, cv2.CALIB_FIX_INTRINSIC),
    ("k1k2p1p2, joint refinement", cv2.CALIB_FIX_K3, cv2.CALIB_USE_INTRINSIC_GUESS | cv2.CALIB_FIX_K3),
    ("k1k2k3p1p2, intrinsics fixed", 0, cv2.CALIB_FIX_INTRINSIC),
)
MIN_PAIRS = 6


@dataclass
class Detection:
    name: str
    left: np.ndarray | None  # [N, 1, 2] float32 corners, or None when not found
    right: np.ndarray | None

    @property
    def usable(self) -> bool:
        return self.left is not None and self.right is not None


def find_corners(image: np.ndarray, board: Board) -> np.ndarray | None:
    """The board's inner corners at sub-pixel precision, row by row, or None."""
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    size = (board.columns, board.rows)
    found, corners = cv2.findChessboardCorners(grey, size, cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE)
    if not found:
        return None
    # the refinement window: about a third of a square, at least 3 px
    side = float(np.median(np.linalg.norm(np.diff(corners.reshape(board.rows, board.columns, 2), axis=1), axis=-1)))
    half = int(np.clip(side / 3, 3, 11))
    return cv2.cornerSubPix(grey, corners, (half, half), (-1, -1), _TERM).reshape(-1, 1, 2).astype(np.float32)


def board_points(board: Board) -> np.ndarray:
    grid = np.mgrid[0:board.columns, 0:board.rows].T.reshape(-1, 2)
    return np.hstack([grid * board.square, np.zeros((len(grid), 1))]).astype(np.float32)


def rectified_rows_error(left: list[np.ndarray], right: list[np.ndarray], K1: np.ndarray, D1: np.ndarray, K2: np.ndarray,
                         D2: np.ndarray, R1: np.ndarray, R2: np.ndarray, P1: np.ndarray, P2: np.ndarray) -> RectifiedError:
    """Mean and max |y_left - y_right| of matching corners once both views are rectified."""
    dy = []
    for a, b in zip(left, right):
        ya = cv2.undistortPoints(a, K1, D1, R=R1, P=P1)[:, 0, 1]
        yb = cv2.undistortPoints(b, K2, D2, R=R2, P=P2)[:, 0, 1]
        dy.append(np.abs(ya - yb))
    values = np.concatenate(dy)
    return RectifiedError(mean=float(values.mean()), max=float(values.max()))


def calibrate_rig(detections: list[Detection], board: Board, image_size: tuple[int, int]) -> Rig:
    """Every candidate camera model calibrated; the one with the lowest rectified row error kept."""
    used = [d for d in detections if d.usable]
    objects = [board_points(board)] * len(used)
    left = [d.left for d in used]
    right = [d.right for d in used]
    best: tuple[float, Rig] | None = None
    for name, mono_flags, stereo_flags in CANDIDATES:
        _, K1, D1, _, _ = cv2.calibrateCamera(objects, left, image_size, None, None, flags=mono_flags, criteria=_TERM)
        _, K2, D2, _, _ = cv2.calibrateCamera(objects, right, image_size, None, None, flags=mono_flags, criteria=_TERM)
        rms, K1, D1, K2, D2, R, T, E, F = cv2.stereoCalibrate(
            objects, left, right, K1, D1, K2, D2, image_size, flags=stereo_flags, criteria=_TERM)
        R1, R2, P1, P2, Q, roi1, roi2 = cv2.stereoRectify(K1, D1, K2, D2, image_size, R, T,
                                                          flags=cv2.CALIB_ZERO_DISPARITY, alpha=0)
        dy = rectified_rows_error(left, right, K1, D1, K2, D2, R1, R2, P1, P2)
        rig = make_rig(image_size=image_size, K1=K1, D1=D1, K2=K2, D2=D2, R=R, T=T, E=E, F=F, R1=R1, R2=R2, P1=P1, P2=P2,
                       Q=Q, roi1=tuple(int(v) for v in roi1), roi2=tuple(int(v) for v in roi2), board=board, rms=float(rms),
                       rectified_dy=dy, camera_model=name, pairs_used=len(used))
        if best is None or dy.mean < best[0]:
            best = (dy.mean, rig)
    assert best is not None
    return best[1]


def draw_corners(image: np.ndarray, corners: np.ndarray | None, board: Board) -> np.ndarray:
    out = image.copy()
    if corners is not None:
        cv2.drawChessboardCorners(out, (board.columns, board.rows), corners, True)
    return out

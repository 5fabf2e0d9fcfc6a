"""The real pair with ground truth an installed package ships, and OpenCV's semi-global matcher as
the bar a model must beat on it.

Motorcycle (Middlebury 2014, as scikit-image ships it: 741x500, disparities 7-60 px) at its size and
at half size. It is used to evaluate only (bench_real, the demo's report): never to train, choose
textures or tune settings on.
"""

from __future__ import annotations

import cv2
import numpy as np

from stereokit.engine.out_of_view import nearest_valid


def motorcycle(scale: float = 1.0) -> dict[str, np.ndarray]:
    """BGR views, ground truth (0 = unknown) and its valid mask, at `scale` of scikit-image's size."""
    from skimage.data import stereo_motorcycle

    left, right, disp = stereo_motorcycle()
    left, right = cv2.cvtColor(left, cv2.COLOR_RGB2BGR), cv2.cvtColor(right, cv2.COLOR_RGB2BGR)
    disp = np.where(np.isfinite(disp), disp, 0).astype(np.float32)
    if scale != 1.0:
        h, w = disp.shape
        size = (round(w * scale), round(h * scale))
        left, right = (cv2.resize(v, size, interpolation=cv2.INTER_AREA) for v in (left, right))
        # nearest, so unknown pixels stay unknown and no value is blended across an edge
        disp = cv2.resize(disp, size, interpolation=cv2.INTER_NEAREST) * np.float32(size[0] / w)
    return {"left": left, "right": right, "disp": disp, "valid": disp > 0}


def fill_holes(disp: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Each invalid pixel takes the smaller of the nearest valid disparities to its left and right
    on its row (Middlebury's background fill); a row with none stays 0."""
    disp = disp.astype(np.float32)
    left, has_left = nearest_valid(disp, valid, "left")
    right, has_right = nearest_valid(disp, valid, "right")
    fill = np.minimum(np.where(has_left, left, np.inf), np.where(has_right, right, np.inf))
    return np.where(valid, disp, np.where(np.isfinite(fill), fill, 0)).astype(np.float32)


def sgbm_filled(left: np.ndarray, right: np.ndarray, max_disp: float) -> np.ndarray:
    """OpenCV's StereoSGBM (3-way, 5x5 blocks, P1 600 / P2 2400, the usual 8/32 x 3 x 5^2), holes filled."""
    num = int(np.ceil((max_disp + 8) / 16) * 16)
    matcher = cv2.StereoSGBM_create(minDisparity=0, numDisparities=num, blockSize=5, P1=600, P2=2400, disp12MaxDiff=1,
                                    uniquenessRatio=10, speckleWindowSize=100, speckleRange=2, mode=cv2.STEREO_SGBM_MODE_SGBM_3WAY)
    raw = matcher.compute(left, right).astype(np.float32) / 16.0
    return fill_holes(raw, raw > 0)

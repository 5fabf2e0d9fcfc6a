"""Rectification of raw pairs with a rig: rows become epipolar lines (what the network searches along)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from stereokit.camera.rig import Rig


@dataclass
class Rectifier:
    """The two remap tables of a rig, computed once and applied to any number of pairs."""

    rig: Rig
    maps: tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]

    @classmethod
    def of(cls, rig: Rig) -> "Rectifier":
        size = tuple(rig.image_size)
        left = cv2.initUndistortRectifyMap(rig.array("K1"), rig.array("D1"), rig.array("R1"), rig.array("P1"), size, cv2.CV_32FC1)
        right = cv2.initUndistortRectifyMap(rig.array("K2"), rig.array("D2"), rig.array("R2"), rig.array("P2"), size, cv2.CV_32FC1)
        return cls(rig, (left, right))

    def __call__(self, left: np.ndarray, right: np.ndarray, crop: bool = False) -> tuple[np.ndarray, np.ndarray]:
        out = [cv2.remap(image, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
               for image, (mx, my) in zip((left, right), self.maps)]
        if crop:
            x, y, w, h = self.common_roi()
            out = [image[y:y + h, x:x + w] for image in out]
        return out[0], out[1]

    def common_roi(self) -> tuple[int, int, int, int]:
        """The rows and columns valid in both rectified views (x, y, w, h). Cropping both views by the
        same window keeps disparities unchanged; the principal point moves by (x, y)."""
        x1, y1, w1, h1 = self.rig.roi1
        x2, y2, w2, h2 = self.rig.roi2
        x, y = max(x1, x2), max(y1, y2)
        return x, y, max(1, min(x1 + w1, x2 + w2) - x), max(1, min(y1 + h1, y2 + h2) - y)


def check_picture(left: np.ndarray, right: np.ndarray, every: int = 32) -> np.ndarray:
    """The rectified pair side by side with horizontal lines: a feature must sit on the same line."""
    pair = np.concatenate([left, right], axis=1).copy()
    for y in range(every // 2, pair.shape[0], every):
        cv2.line(pair, (0, y), (pair.shape[1] - 1, y), (0, 255, 0), 1)
    return pair

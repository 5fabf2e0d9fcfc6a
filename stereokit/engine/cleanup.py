"""What infer does to a network's disparity map before handing it over, at the pair's own size.

Two steps, each chosen on the seed-77 scenes (docs/performance.md, "Cleaning the disparity";
benchmarks/bench_cleanup.py), each better there on EPE, bad-2 and bad-3 at half and at own size:
the strip at the left edge that the right view cannot see is raised to its row's seen disparity
(stereokit/engine/out_of_view.py), then a 3x3 median takes out single-pixel outliers (half size
2.067 -> 2.052 px, bad-2 13.05 -> 12.69%; own size 4.012 -> 3.986 px, 20.45 -> 20.00%; a 5x5 median
cost EPE at half size). `--raw` skips both: the network's values as they come.
"""

from __future__ import annotations

import cv2
import numpy as np

from stereokit.engine.out_of_view import raise_out_of_view

MEDIAN_SIZE = 3


def clean_disparity(disp: np.ndarray) -> np.ndarray:
    """A [H, W] disparity map in pixels -> the same, the strip raised and median-filtered (float32)."""
    return cv2.medianBlur(np.ascontiguousarray(raise_out_of_view(disp), dtype=np.float32), MEDIAN_SIZE)

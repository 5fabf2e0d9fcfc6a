"""Which ground-truth pixels count: the recipe scores 0 < gt < maxdisp (per image, then averaged)."""

from __future__ import annotations

from typing import TypeVar

import numpy as np
from torch import Tensor

Disparity = TypeVar("Disparity", np.ndarray, Tensor)


def valid_mask(gt: Disparity, maxdisp: float) -> Disparity:
    """The scored pixels of a disparity map, numpy or torch alike. NaN and +-inf (missing ground truth
    in PFM files) fail both comparisons, so they are never valid."""
    return (gt > 0) & (gt < maxdisp)

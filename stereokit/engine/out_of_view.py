"""Pixels near the left edge whose match would fall left of the right view's first column.

A left-view pixel at column x with disparity d is seen at x - d in the right view; where x < d it is
not seen at all, and the cost volume has no candidate that large (past the right view's edge it
compares against padding). The network then answers with a disparity it can match, a too-small one:
on the 48 seed-77 scenes, half size, the shipped model's error over those pixels averages -4.9 px
(-13 px at their own size).

The fix is Middlebury's hole fill seen from the edge: such a pixel takes the disparity of the nearest
pixel to its right on the same row that the model does see, when that is larger than its own (a near
object the network saw in the strip keeps its value). Chosen on the seed-77 scenes against taking the
neighbour's value outright and the smaller of the two (docs/performance.md, "Cleaning the disparity";
benchmarks/bench_cleanup.py): the larger was the best at both sizes on EPE, bad-2 and bad-3. infer
applies it through stereokit/engine/cleanup.py.
"""

from __future__ import annotations

from typing import Callable

import numpy as np


def nearest_valid(values: np.ndarray, valid: np.ndarray, side: str) -> tuple[np.ndarray, np.ndarray]:
    """For every pixel of a [H, W] map, the value of the nearest valid pixel on its row towards `side`
    ("left" or "right", the pixel itself included), and whether there is one."""
    h, w = values.shape
    cols = np.broadcast_to(np.arange(w), (h, w))
    if side == "right":
        index = np.minimum.accumulate(np.where(valid, cols, w)[:, ::-1], axis=1)[:, ::-1]
        found = index < w
    elif side == "left":
        index = np.maximum.accumulate(np.where(valid, cols, -1), axis=1)
        found = index >= 0
    else:
        raise ValueError(f"side must be 'left' or 'right', not {side!r}")
    return np.take_along_axis(values, np.clip(index, 0, w - 1), axis=1), found


def out_of_view(disp: np.ndarray) -> np.ndarray:
    """Where a [H, W] disparity map (left view, pixels) says the right view cannot see: x < d."""
    return np.arange(disp.shape[1])[None, :] < disp


def toward_seen_neighbour(disp: np.ndarray, pick: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
    """Each pixel the right view cannot see becomes pick(its value, the nearest seen disparity to its
    right on its row); a row with no seen pixel, and every seen pixel, stay as they were (a new array)."""
    hidden = out_of_view(disp)
    neighbour, found = nearest_valid(disp, ~hidden, "right")
    return np.where(hidden & found, pick(disp, neighbour), disp).astype(disp.dtype, copy=False)


def raise_out_of_view(disp: np.ndarray) -> np.ndarray:
    """infer's rule: the larger of a hidden pixel's own value and its row's nearest seen one."""
    return toward_seen_neighbour(disp, np.maximum)

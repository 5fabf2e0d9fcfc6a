"""Middlebury's background fill, as the SGBM bar gets it."""

from __future__ import annotations

import numpy as np

from stereokit.data.real_pairs import fill_holes


def test_holes_take_the_smaller_of_their_nearest_valid_neighbours_and_empty_rows_become_zero() -> None:
    disp = np.array([[-1, 9, -1, -1, 4, -1], [-1, -1, -1, -1, -1, -1], [3, 3, 3, 3, 3, 3]], dtype=np.float32)
    filled = fill_holes(disp, disp > 0)
    assert filled[0].tolist() == [9, 9, 4, 4, 4, 4]   # left edge: only a right neighbour; right edge: only a left one
    assert filled[1].tolist() == [0] * 6 and filled[2].tolist() == [3] * 6
    assert filled.dtype == np.float32

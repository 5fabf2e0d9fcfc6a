"""The strip the right view cannot see: which pixels it holds, what they are raised to, and that nothing
else moves."""

from __future__ import annotations

import numpy as np
import pytest

from stereokit.engine.out_of_view import nearest_valid, out_of_view, raise_out_of_view


def test_nearest_valid_looks_along_the_row_towards_either_side() -> None:
    values = np.array([[1.0, 2.0, 3.0, 4.0, 5.0], [6.0, 7.0, 8.0, 9.0, 10.0]], dtype=np.float32)
    valid = np.array([[False, True, False, False, True], [False, False, False, False, False]])
    right, found_right = nearest_valid(values, valid, "right")
    left, found_left = nearest_valid(values, valid, "left")
    assert right[0].tolist() == [2, 2, 5, 5, 5] and found_right[0].all() and not found_right[1].any()
    assert left[0, 1:].tolist() == [2, 2, 2, 5] and found_left[0].tolist() == [False, True, True, True, True]
    with pytest.raises(ValueError, match="'up'"):
        nearest_valid(values, valid, "up")


def test_a_wall_the_network_clipped_at_the_edge_is_raised_back_to_its_disparity() -> None:
    # A wall at 20 px seen through the cost volume: where x < 20 no candidate reaches 20, and it answers
    # about as far as the right view goes.
    truth = np.full((3, 64), 20.0, dtype=np.float32)
    clipped = np.minimum(truth, np.arange(64, dtype=np.float32)[None, :] + 0.5)
    assert out_of_view(clipped).sum() == 3 * 20 and out_of_view(truth).sum() == 3 * 20
    fixed = raise_out_of_view(clipped)
    assert fixed.dtype == np.float32
    np.testing.assert_array_equal(fixed, truth)


def test_a_near_object_in_the_strip_keeps_its_value_and_seen_pixels_never_move() -> None:
    rng = np.random.default_rng(3)
    disp = rng.uniform(5.0, 30.0, (8, 80)).astype(np.float32)
    disp[:, 2:6] = 60.0  # nearer than anything the row sees further right
    disp[7] = 100.0      # a row the right view sees nowhere: nothing to take, left as it was
    fixed = raise_out_of_view(disp)
    hidden = out_of_view(disp)
    np.testing.assert_array_equal(fixed[~hidden], disp[~hidden])
    assert (fixed[:7, 2:6] == 60.0).all() and (fixed >= disp).all() and (fixed[:7][hidden[:7]] > disp[:7][hidden[:7]]).any()
    np.testing.assert_array_equal(fixed[7], disp[7])
    assert fixed is not disp

from __future__ import annotations

import numpy as np

from stereokit.camera.depth import decode_ply, depth_from_disparity, depth_to_mm, encode_ply, point_cloud


def test_depth_is_f_times_baseline_over_disparity_and_zero_where_unmatched() -> None:
    disp = np.array([[10.0, 0.0], [-1.0, 40.0]], np.float32)
    depth = depth_from_disparity(disp, 0.1, 500.0)
    assert np.allclose(depth, [[5.0, 0.0], [0.0, 1.25]])


def test_millimetres_round_trip_and_mark_invalid_and_far_as_zero() -> None:
    depth = np.array([[1.2346, 0.0], [70.0, 3.0]], np.float32)
    mm = depth_to_mm(depth, 1.0, max_depth=2.5)
    assert mm.dtype == np.uint16
    assert mm[0, 0] == 1235 and mm[0, 1] == 0
    assert mm[1, 0] == 0 and mm[1, 1] == 0  # past 65.535 m, and past --max-depth
    assert depth_to_mm(np.array([[25.0]], np.float32), 0.01)[0, 0] == 250  # centimetres -> mm


def test_point_cloud_back_projects_and_the_ply_reads_back() -> None:
    depth = np.full((4, 6), 2.0, np.float32)
    depth[0, 0] = 0
    colours = np.zeros((4, 6, 3), np.uint8)
    colours[..., 2] = 200  # red in BGR
    points, rgb = point_cloud(depth, colours, focal=100.0, cx=2.5, cy=1.5)
    assert len(points) == 23
    assert np.allclose(points[:, 2], 2.0)
    # pixel (x=5, y=3): ((5 - 2.5) * 2 / 100, (3 - 1.5) * 2 / 100)
    assert np.allclose(points[-1], [0.05, 0.03, 2.0])
    assert (rgb[:, 0] == 200).all() and (rgb[:, 2] == 0).all()
    back, back_rgb = decode_ply(encode_ply(points, rgb))
    assert np.array_equal(back, points) and np.array_equal(back_rgb, rgb)

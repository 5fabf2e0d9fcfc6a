"""Depth from disparity, its 16-bit millimetre encoding and coloured point clouds (binary PLY)."""

from __future__ import annotations

import numpy as np

# metres in one unit of a rig's square size (and so of its baseline and depth)
UNIT_METRES = {"m": 1.0, "cm": 0.01, "mm": 0.001, "in": 0.0254}
# depth_mm.png: uint16 millimetres, 0 = invalid (the robotics convention: ROS, librealsense, depthai)
MM_MAX = 65535


def depth_from_disparity(disp: np.ndarray, baseline: float, focal: float) -> np.ndarray:
    """depth = f * baseline / disparity, in the baseline's unit; 0 where the disparity is not positive (no match)."""
    with np.errstate(divide="ignore"):
        return np.where(disp > 0, focal * baseline / np.maximum(disp, 1e-6), 0.0).astype(np.float32)


def depth_to_mm(depth: np.ndarray, metres_per_unit: float, max_depth: float | None = None) -> np.ndarray:
    """uint16 millimetres; 0 where the depth is invalid, beyond max_depth, or past 65.535 m."""
    mm = np.rint(depth.astype(np.float64) * metres_per_unit * 1000.0)
    bad = ~np.isfinite(mm) | (mm <= 0) | (mm > MM_MAX)
    if max_depth is not None:
        bad |= depth > max_depth
    return np.where(bad, 0, mm).astype(np.uint16)


def point_cloud(depth: np.ndarray, colours_bgr: np.ndarray, focal: float, cx: float, cy: float,
                max_depth: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(points [N, 3] float32, colours [N, 3] uint8 RGB) in the rectified left camera's frame
    (x right, y down, z forward), invalid and too-far pixels left out."""
    h, w = depth.shape
    keep = np.isfinite(depth) & (depth > 0)
    if max_depth is not None:
        keep &= depth <= max_depth
    ys, xs = np.nonzero(keep)
    z = depth[ys, xs].astype(np.float32)
    points = np.stack([(xs - cx) * z / focal, (ys - cy) * z / focal, z], axis=1).astype(np.float32)
    colours = colours_bgr[ys, xs][:, ::-1].astype(np.uint8)
    return points, colours


_PLY_DTYPE = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])


def encode_ply(points: np.ndarray, colours: np.ndarray) -> bytes:
    """Binary little-endian PLY with x y z float and red green blue uchar per vertex."""
    header = (
        "ply\nformat binary_little_endian 1.0\ncomment stereokit point cloud: rectified left camera frame, x right, y down, z forward\n"
        f"element vertex {len(points)}\nproperty float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
    )
    body = np.empty(len(points), _PLY_DTYPE)
    body["x"], body["y"], body["z"] = points[:, 0], points[:, 1], points[:, 2]
    body["red"], body["green"], body["blue"] = colours[:, 0], colours[:, 1], colours[:, 2]
    return header.encode("ascii") + body.tobytes()


def decode_ply(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """The inverse of encode_ply (our own layout only): (points, colours)."""
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii").splitlines()
    if header[1] != "format binary_little_endian 1.0":
        raise ValueError("not a binary little-endian PLY")
    count = next(int(line.split()[-1]) for line in header if line.startswith("element vertex"))
    body = np.frombuffer(data[end:], _PLY_DTYPE, count=count)
    return np.stack([body["x"], body["y"], body["z"]], axis=1), np.stack([body["red"], body["green"], body["blue"]], axis=1)

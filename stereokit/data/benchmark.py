"""What every real benchmark reader yields: the SceneFlow sample's arrays plus the masks and the
geometry a benchmark ships, and the one entry point that picks the reader by name."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from stereokit.data.pairs import read_image
from stereokit.errors import DataError

BENCHMARKS = ("middlebury", "kitti2012", "kitti2015", "eth3d")


@dataclass
class BenchmarkSample:
    name: str
    left: np.ndarray  # HxWx3 uint8 BGR (grey promoted)
    right: np.ndarray
    disp: np.ndarray  # HxW float32 pixels; 0 where unknown
    valid: np.ndarray  # HxW bool: ground truth known
    nonocc: np.ndarray | None  # HxW bool: known and seen in both views, where the benchmark says
    focal_px: float | None = None
    baseline_m: float | None = None
    doffs: float = 0.0  # depth = f * B / (d + doffs) (Middlebury's principal point offset)
    meta: dict[str, str] = field(default_factory=dict)


def require(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DataError(f"{path}: missing ({what}).")
    return path


def read_views(left: Path, right: Path) -> tuple[np.ndarray, np.ndarray]:
    a, b = read_image(require(left, "the left image")), read_image(require(right, "the right image"))
    if a.shape != b.shape:
        raise DataError(f"{right}: {b.shape[1]}x{b.shape[0]} differs from the left image's {a.shape[1]}x{a.shape[0]}.")
    return a, b


def check_size(path: Path, array: np.ndarray, image: np.ndarray) -> None:
    if array.shape[:2] != image.shape[:2]:
        raise DataError(f"{path}: {array.shape[1]}x{array.shape[0]} differs from the image's {image.shape[1]}x{image.shape[0]}.")


def read_png16_disparity(path: Path, image: np.ndarray) -> np.ndarray:
    """KITTI's disparity PNG: uint16, disparity = value / 256, 0 = no ground truth."""
    raw = cv2.imread(str(require(path, "ground-truth disparity")), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise DataError(f"{path}: not a readable PNG.")
    if raw.dtype != np.uint16 or raw.ndim != 2:
        raise DataError(f"{path}: a disparity PNG must be 16-bit single-channel (disparity x 256), this one is {raw.dtype} with {1 if raw.ndim == 2 else raw.shape[2]} channels.")
    check_size(path, raw, image)
    return raw.astype(np.float32) / 256.0


def read_benchmark(name: str, folder: Path) -> list[BenchmarkSample]:
    """Every sample with ground truth under `folder`, read by the benchmark's own reader."""
    from stereokit.data import eth3d, kitti, middlebury

    folder = Path(folder)
    if name not in BENCHMARKS:
        raise DataError(f"--dataset {name!r}: not a known benchmark; known: {', '.join(BENCHMARKS)} (and sceneflow).")
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder (the {name} data directory).")
    if name == "middlebury":
        return middlebury.read_middlebury(folder)
    if name == "eth3d":
        return eth3d.read_eth3d(folder)
    return kitti.read_kitti(folder, 2012 if name == "kitti2012" else 2015)

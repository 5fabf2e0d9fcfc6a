"""KITTI stereo 2012 (colored_0/1, disp_noc, disp_occ, calib/) and 2015 (image_2/3, disp_noc_0,
disp_occ_0, calib_cam_to_cam/): only frame _10 of each pair has ground truth.

Disparities are uint16 PNGs, value / 256, 0 = no ground truth (sparse, from a LiDAR). The valid
mask is disp_occ's (every measured pixel), the non-occluded one disp_noc's. f is P2[0, 0] (2012:
P0 of calib/NNNNNN.txt; 2015: P_rect_02 of calib_cam_to_cam), the baseline from the two projections'
x offsets: B = (P_left[0, 3] - P_right[0, 3]) / f.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stereokit.data.benchmark import BenchmarkSample, read_png16_disparity, read_views
from stereokit.errors import DataError

LAYOUT = {
    2012: {"left": "colored_0", "right": "colored_1", "occ": "disp_occ", "noc": "disp_noc"},
    2015: {"left": "image_2", "right": "image_3", "occ": "disp_occ_0", "noc": "disp_noc_0"},
}


def _projections(path: Path) -> dict[str, np.ndarray]:
    rows: dict[str, np.ndarray] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        try:
            numbers = np.array([float(v) for v in value.split()])
        except ValueError:
            continue
        if numbers.size == 12:
            rows[key.strip()] = numbers.reshape(3, 4)
    return rows


def read_calibration(path: Path, year: int) -> tuple[float, float] | None:
    """(f px, baseline m) from a KITTI calib file, or None when it has no usable projections."""
    if not path.is_file():
        return None
    rows = _projections(path)
    names = ("P2", "P3") if year == 2012 and "P2" in rows else ("P0", "P1") if year == 2012 else ("P_rect_02", "P_rect_03")
    if not all(n in rows for n in names):
        return None
    left, right = rows[names[0]], rows[names[1]]
    f = float(left[0, 0])
    return f, float((left[0, 3] - right[0, 3]) / f)


def read_kitti(folder: Path, year: int) -> list[BenchmarkSample]:
    """The folder holding training/ (or training/ itself)."""
    folder = Path(folder)
    root = folder / "training" if (folder / "training").is_dir() else folder
    layout = LAYOUT[year]
    left_dir = root / layout["left"]
    if not left_dir.is_dir():
        raise DataError(f"{root}: not a KITTI {year} training folder (no {layout['left']}/).")
    occ_dir = root / layout["occ"]
    if not occ_dir.is_dir():
        raise DataError(f"{occ_dir}: missing (the ground truth of KITTI {year}).")
    samples = []
    for left in sorted(left_dir.glob("*_10.png")):
        frame = left.name[:-len("_10.png")]
        l_img, r_img = read_views(left, root / layout["right"] / left.name)
        disp = read_png16_disparity(occ_dir / left.name, l_img)
        valid = disp > 0
        noc_path = root / layout["noc"] / left.name
        nonocc = (read_png16_disparity(noc_path, l_img) > 0) & valid if noc_path.is_file() else None
        calib = root / ("calib" if year == 2012 else "calib_cam_to_cam") / f"{frame}.txt"
        geometry = read_calibration(calib, year)
        samples.append(BenchmarkSample(f"{frame}_10", l_img, r_img, disp, valid, nonocc,
                                       focal_px=geometry[0] if geometry else None, baseline_m=geometry[1] if geometry else None))
    if not samples:
        raise DataError(f"{left_dir}: no *_10.png images (KITTI's frames with ground truth).")
    return samples

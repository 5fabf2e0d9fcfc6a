"""Middlebury: 2014 / MiddEval3 (im0, im1, calib.txt, disp0GT.pfm or disp0.pfm, mask0nocc.png) and
2005 / 2006 (view1, view5, disp1.png, dmin.txt).

2014 / MiddEval3: the PFM holds inf where the disparity is unknown; mask0nocc.png is 255 where a
pixel is seen in both views, 128 where occluded, 0 where unknown. calib.txt gives cam0 (f, cx, cy)
in pixels, doffs (cx1 - cx0) and the baseline in millimetres: Z = baseline * f / (d + doffs).
2005 / 2006: disp1.png stores the disparity times the downsampling factor (1 full, 2 half,
3 third size) as 8-bit, 0 = unknown; dmin.txt the full-size disparity the crop removed.
"""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np

from stereokit.data.benchmark import BenchmarkSample, check_size, read_views, require
from stereokit.data.pfm import read_pfm
from stereokit.errors import DataError

# the 2005/2006 cameras at full size (the datasets' page): f 3740 px, baseline 160 mm
FULL_2005_FOCAL, FULL_2005_BASELINE_M = 3740.0, 0.160


def read_calib(path: Path) -> dict[str, str]:
    """calib.txt as key -> raw value (cam0 and cam1 are '[f 0 cx; 0 f cy; 0 0 1]')."""
    values: dict[str, str] = {}
    for line in require(path, "calib.txt, the camera calibration").read_text(encoding="utf-8", errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    return values


def camera_matrix(text: str, path: Path) -> np.ndarray:
    numbers = [float(v) for v in re.findall(r"[-+0-9.eE]+", text)]
    if len(numbers) != 9:
        raise DataError(f"{path}: camera matrix {text!r} does not have 9 numbers.")
    return np.array(numbers).reshape(3, 3)


def _number(calib: dict[str, str], key: str, path: Path) -> float:
    if key not in calib:
        raise DataError(f"{path}: has no '{key}=' line.")
    try:
        return float(calib[key])
    except ValueError:
        raise DataError(f"{path}: '{key}={calib[key]}' is not a number.") from None


def read_scene_2014(scene: Path, gt_dir: Path | None = None) -> BenchmarkSample:
    """One 2014 / MiddEval3 (or ETH3D, the same layout) scene; gt_dir holds the ground truth when it is not beside the images."""
    gt_dir = gt_dir or scene
    left, right = read_views(scene / "im0.png", scene / "im1.png")
    calib_path = scene / "calib.txt"
    calib = read_calib(calib_path)
    if "cam0" not in calib:
        raise DataError(f"{calib_path}: has no 'cam0=' line.")
    K0 = camera_matrix(calib["cam0"], calib_path)
    pfm = gt_dir / "disp0GT.pfm" if (gt_dir / "disp0GT.pfm").is_file() else gt_dir / "disp0.pfm"
    disp = read_pfm(require(pfm, "ground truth disp0GT.pfm or disp0.pfm"))
    check_size(pfm, disp, left)
    valid = np.isfinite(disp) & (disp > 0)
    nonocc = None
    mask_path = gt_dir / "mask0nocc.png"
    if mask_path.is_file():
        mask = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE)
        if mask is None:
            raise DataError(f"{mask_path}: not a readable PNG.")
        check_size(mask_path, mask, left)
        nonocc = valid & (mask == 255)
        valid &= mask > 0
    baseline_mm = _number(calib, "baseline", calib_path)
    doffs = _number(calib, "doffs", calib_path) if "doffs" in calib else 0.0
    return BenchmarkSample(scene.name, left, right, np.where(valid, disp, 0).astype(np.float32), valid, nonocc,
                           focal_px=float(K0[0, 0]), baseline_m=baseline_mm / 1000.0, doffs=doffs,
                           meta={k: calib[k] for k in ("ndisp", "vmin", "vmax") if k in calib})


def downsampling_factor(width: int) -> int:
    """2005/2006 images come at full (~1300-1400 px wide), half or third size."""
    return 1 if width > 1000 else 2 if width > 560 else 3


def read_scene_2005(scene: Path) -> BenchmarkSample:
    left, right = read_views(scene / "view1.png", scene / "view5.png")
    path = scene / "disp1.png"
    raw = cv2.imread(str(require(path, "ground truth disp1.png")), cv2.IMREAD_UNCHANGED)
    if raw is None or raw.ndim != 2:
        raise DataError(f"{path}: not a single-channel disparity PNG.")
    check_size(path, raw, left)
    factor = downsampling_factor(left.shape[1])
    disp = raw.astype(np.float32) / factor
    valid = raw > 0
    dmin = 0.0
    if (scene / "dmin.txt").is_file():
        try:
            dmin = float((scene / "dmin.txt").read_text().split()[0])
        except (ValueError, IndexError):
            raise DataError(f"{scene / 'dmin.txt'}: not a number.") from None
    return BenchmarkSample(scene.name, left, right, disp, valid, None, focal_px=FULL_2005_FOCAL / factor,
                           baseline_m=FULL_2005_BASELINE_M, doffs=dmin / factor, meta={"downsampling": str(factor)})


def read_middlebury(folder: Path) -> list[BenchmarkSample]:
    """A scene folder, or a folder of scenes (MiddEval3/trainingQ, a 2014 download, ...), searched two levels down."""
    folder = Path(folder)
    scenes = [p for p in [folder, *sorted(folder.glob("*")), *sorted(folder.glob("*/*"))] if p.is_dir()
              and ((p / "im0.png").is_file() or (p / "view1.png").is_file())]
    if not scenes:
        raise DataError(f"{folder}: no Middlebury scene here (a folder with im0.png/im1.png/calib.txt, or view1.png/view5.png/disp1.png).")
    return [read_scene_2014(s) if (s / "im0.png").is_file() else read_scene_2005(s) for s in scenes]

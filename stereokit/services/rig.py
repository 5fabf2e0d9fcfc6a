"""`stereokit rig calibrate`: a stereo rig from chessboard pairs -> rig.yaml, corner pictures, rig_check.png."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from stereokit.camera.calibrate import MIN_PAIRS, Detection, calibrate_rig, draw_corners, find_corners
from stereokit.camera.depth import UNIT_METRES
from stereokit.camera.rectify import Rectifier, check_picture
from stereokit.camera.rig import Board, rig_yaml
from stereokit.data.pairs import find_pairs, read_pair
from stereokit.engine.plots import png_bytes
from stereokit.errors import StereokitError
from stereokit.paths import folder_to_read
from stereokit.progress import progress_bar
from stereokit.runs import atomic_write_bytes, atomic_write_text


class RigResult(BaseModel):
    rig: Path
    pairs: int
    used: list[str]
    skipped: list[str]
    rms: float
    rectified_dy_mean: float
    rectified_dy_max: float
    baseline: float
    unit: str
    focal_px: float
    camera_model: str
    pictures: list[Path]


def parse_board(text: str) -> tuple[int, int]:
    """`9x6` -> (9, 6): inner corners across and down, each above 2."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match or min(int(match.group(1)), int(match.group(2))) <= 2:
        raise StereokitError(f"--board {text!r}: expected COLUMNSxROWS of inner corners, both above 2 (e.g. 9x6).")
    return int(match.group(1)), int(match.group(2))


def run_rig_calibrate(folder: Path, board_text: str, square: float, out: Path, unit: str = "m", force: bool = False,
                      show_progress: bool = True) -> RigResult:
    columns, rows = parse_board(board_text)
    if not (np.isfinite(square) and square > 0):
        raise StereokitError(f"--square {square}: the side of one square must be a positive length.")
    out = Path(out)
    if out.exists() and (out.is_dir() or not force):
        raise StereokitError(f"{out}: " + ("is a folder; --out names the rig file (rig.yaml)." if out.is_dir() else "already exists; pass --force to replace it."))
    if unit not in UNIT_METRES:
        raise StereokitError(f"--unit {unit!r}: expected one of {', '.join(UNIT_METRES)}.")
    board = Board(columns=columns, rows=rows, square=float(square), unit=unit)  # type: ignore[arg-type]
    pairs = find_pairs(folder_to_read(Path(folder), "DIR"))
    detections: list[Detection] = []
    images: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    size: tuple[int, int] | None = None
    with progress_bar("corners", len(pairs), enabled=show_progress) as advance:
        for name, left_path, right_path in pairs:
            left, right = read_pair(left_path, right_path)
            here = (left.shape[1], left.shape[0])
            if size is None:
                size = here
            elif here != size:
                raise StereokitError(f"{left_path}: {here[0]}x{here[1]} differs from the first pair's {size[0]}x{size[1]}; one rig, one image size.")
            detections.append(Detection(name, find_corners(left, board), find_corners(right, board)))
            images[name] = (left, right)
            advance()
    used = [d.name for d in detections if d.usable]
    skipped = [d.name for d in detections if not d.usable]
    if not used:
        raise StereokitError(f"{folder}: no {columns}x{rows} board found in both views of any pair; check --board (inner corners) and the pictures.")
    if len(used) < MIN_PAIRS:
        raise StereokitError(f"{folder}: the board was found in both views of {len(used)} pairs, fewer than the {MIN_PAIRS} a stereo calibration needs; add pairs.")
    assert size is not None
    rig = calibrate_rig(detections, board, size)
    # pictures beside the rig file: corners of each pair, one rectified pair with lines
    pictures: list[Path] = []
    corner_dir = out.parent / "corners"
    for d in detections:
        left, right = images[d.name]
        path = corner_dir / f"{d.name}.png"
        atomic_write_bytes(path, png_bytes(np.concatenate([draw_corners(left, d.left, board), draw_corners(right, d.right, board)], axis=1)))
        pictures.append(path)
    rect_l, rect_r = Rectifier.of(rig)(*images[used[0]])
    check = out.parent / "rig_check.png"
    atomic_write_bytes(check, png_bytes(check_picture(rect_l, rect_r)))
    pictures.append(check)
    atomic_write_text(out, rig_yaml(rig))
    return RigResult(rig=out, pairs=len(pairs), used=used, skipped=skipped, rms=rig.rms, rectified_dy_mean=rig.rectified_dy.mean,
                     rectified_dy_max=rig.rectified_dy.max, baseline=rig.baseline, unit=unit, focal_px=rig.focal_px,
                     camera_model=rig.camera_model, pictures=pictures)

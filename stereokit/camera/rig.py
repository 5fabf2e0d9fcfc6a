"""The stereo rig: OpenCV's calibration and rectification matrices under OpenCV's names, in YAML.

Conventions (OpenCV's): a point X1 in the left camera's frame is X2 = R X1 + T in the right one's;
T is in the unit of the square size (`unit`); R1/R2 rotate each camera into the common rectified
frame and P1/P2 project it (P2[0, 3] = -f * B); Q maps (x, y, disparity, 1) to 3-D in the rectified
left camera's frame (x right, y down, z forward).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from stereokit.errors import StereokitError

RIG_SCHEMA_VERSION = 1
Matrix = list[list[float]]


class Board(BaseModel):
    model_config = ConfigDict(extra="forbid")

    columns: int  # inner corners across
    rows: int  # inner corners down
    square: float  # side of one square, in `unit`
    unit: Literal["m", "cm", "mm", "in"] = "m"


class RectifiedError(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mean: float  # mean |y_left - y_right| of the board's corners after rectification, px
    max: float


class Rig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = RIG_SCHEMA_VERSION
    image_size: tuple[int, int]  # (width, height), as OpenCV gives sizes
    K1: Matrix
    D1: list[float]
    K2: Matrix
    D2: list[float]
    R: Matrix
    T: list[float]
    E: Matrix
    F: Matrix
    R1: Matrix
    R2: Matrix
    P1: Matrix
    P2: Matrix
    Q: Matrix
    roi1: tuple[int, int, int, int]  # x, y, width, height of the valid region of the rectified left view
    roi2: tuple[int, int, int, int]
    board: Board
    rms: float  # stereo reprojection error, px
    rectified_dy: RectifiedError
    camera_model: str  # which calibration flags were chosen (see stereokit/camera/calibrate.py)
    pairs_used: int

    def array(self, name: str) -> np.ndarray:
        return np.asarray(getattr(self, name), dtype=np.float64)

    @property
    def focal_px(self) -> float:
        """The rectified focal length (P1[0, 0]): depth = focal_px * baseline / disparity."""
        return float(self.P1[0][0])

    @property
    def baseline(self) -> float:
        """Distance between the rectified centres, in `unit` (from P2: -P2[0, 3] / P2[0, 0])."""
        return float(-self.P2[0][3] / self.P2[0][0])

    @property
    def unit(self) -> str:
        return self.board.unit


def _matrix(a: np.ndarray) -> Matrix:
    return [[float(v) for v in row] for row in np.asarray(a, dtype=np.float64)]


def make_rig(**arrays: object) -> Rig:
    """A Rig from numpy arrays (matrices as nested lists, vectors flattened)."""
    values: dict[str, object] = {}
    for key, value in arrays.items():
        if isinstance(value, np.ndarray):
            value = _matrix(value) if value.ndim == 2 and min(value.shape) > 1 else [float(v) for v in value.ravel()]
        values[key] = value
    return Rig.model_validate(values)


def rig_yaml(rig: Rig) -> str:
    return "# stereokit rig (OpenCV names; T and baseline in board.unit; see docs/cameras.md)\n" + yaml.safe_dump(
        rig.model_dump(mode="json"), sort_keys=False, default_flow_style=None)


def load_rig(path: Path) -> Rig:
    """A rig file, or one sentence naming it and what is wrong."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StereokitError(f"{path}: rig file not found; make one with 'stereokit rig calibrate'.") from None
    except (OSError, UnicodeDecodeError):
        raise StereokitError(f"{path}: not a readable rig file (expected the YAML 'stereokit rig calibrate' writes).") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        raise StereokitError(f"{path}: not a rig file (not valid YAML).") from None
    if not isinstance(data, dict) or "K1" not in data:
        raise StereokitError(f"{path}: not a rig file (no camera matrices); make one with 'stereokit rig calibrate'.")
    if data.get("schema_version") != RIG_SCHEMA_VERSION:
        raise StereokitError(f"{path}: rig schema version {data.get('schema_version')!r}, this stereokit reads {RIG_SCHEMA_VERSION}; re-run 'stereokit rig calibrate'.")
    try:
        return Rig.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise StereokitError(f"{path}: rig field '{where}' is not valid ({first['msg']}).") from None


def rig_hash(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()

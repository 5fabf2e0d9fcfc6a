"""PFM (Portable Float Map), the format of SceneFlow's disparity maps.

Header: "PF" (3 channels) or "Pf" (1 channel), then "width height", then a scale whose sign gives
the byte order (negative: little-endian). Rows are stored bottom-to-top, float32.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from stereokit.errors import DataError

_HEADER = re.compile(rb"^(PF|Pf)\s+(\d+)\s+(\d+)\s+([-+]?[0-9.eE+-]+)\s")
# A header never needs more than this; it bounds what a corrupt file can make us read or allocate.
_MAX_HEADER = 256
_MAX_PIXELS = 1 << 28


def decode_pfm(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """PFM bytes -> float32 array [H, W] or [H, W, 3], top row first."""
    match = _HEADER.match(data[:_MAX_HEADER])
    if match is None:
        raise DataError(f"{name}: not a PFM file (bad header); re-export or re-download it.")
    kind, w, h, scale_text = match.groups()
    width, height = int(w), int(h)
    try:
        scale = float(scale_text)
    except ValueError:
        raise DataError(f"{name}: not a PFM file (bad scale '{scale_text.decode(errors='replace')}').") from None
    if width <= 0 or height <= 0 or width * height > _MAX_PIXELS or scale == 0 or not np.isfinite(scale):
        raise DataError(f"{name}: PFM header has an impossible size {width}x{height} or scale {scale}.")
    channels = 3 if kind == b"PF" else 1
    count = width * height * channels
    body = data[match.end() : match.end() + 4 * count]
    if len(body) < 4 * count:
        raise DataError(f"{name}: PFM is truncated ({len(body)} of {4 * count} data bytes); re-export or re-download it.")
    dtype = np.dtype("<f4") if scale < 0 else np.dtype(">f4")
    array = np.frombuffer(body, dtype=dtype, count=count).astype(np.float32)
    shape = (height, width, 3) if channels == 3 else (height, width)
    return np.ascontiguousarray(np.flipud(array.reshape(shape)))


def read_pfm(path: Path) -> np.ndarray:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read the PFM file ({exc.strerror or exc.__class__.__name__}).") from None
    return decode_pfm(data, str(path))


def encode_pfm(array: np.ndarray, little_endian: bool = True) -> bytes:
    """float array [H, W] or [H, W, 3] -> PFM bytes (scale 1.0, sign by byte order)."""
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[2] == 3:
        kind = b"PF"
    elif array.ndim == 2:
        kind = b"Pf"
    else:
        raise ValueError(f"PFM holds [H, W] or [H, W, 3] arrays, not {array.shape}")
    height, width = array.shape[:2]
    dtype = np.dtype("<f4") if little_endian else np.dtype(">f4")
    scale = b"-1.0" if little_endian else b"1.0"
    body = np.flipud(array).astype(dtype).tobytes()
    return kind + b"\n" + f"{width} {height}".encode() + b"\n" + scale + b"\n" + body


def write_pfm(path: Path, array: np.ndarray, little_endian: bool = True) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(encode_pfm(array, little_endian))

"""Folders of stereo pairs without ground truth (a camera's chessboard shots, a user's own scenes):
`left/` and `right/` with the same file names, or `leftNN.ext` / `rightNN.ext` side by side."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np

from stereokit.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm", ".pgm")
_SIDE = re.compile(r"^(left|right)[_-]?(.+)$", re.IGNORECASE)


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def find_pairs(folder: Path) -> list[tuple[str, Path, Path]]:
    """(name, left, right) for every pair in the folder, sorted by name; names that have one side
    only are refused, naming the first, so a user never calibrates on a shuffled set."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder of stereo pairs (it does not exist or is a file).")
    if (folder / "left").is_dir() and (folder / "right").is_dir():
        left = {p.name: p for p in _images(folder / "left")}
        right = {p.name: p for p in _images(folder / "right")}
        lonely = sorted(set(left) ^ set(right))
        if lonely:
            side = "left" if lonely[0] in left else "right"
            other = "right" if side == "left" else "left"
            raise DataError(f"{folder / side / lonely[0]}: has no image of the same name in {folder / other}; left/ and right/ must match.")
        pairs = [(Path(name).stem, left[name], right[name]) for name in sorted(left)]
    else:
        sides: dict[str, dict[str, Path]] = {"left": {}, "right": {}}
        for path in _images(folder):
            match = _SIDE.match(path.stem)
            if match:
                sides[match.group(1).lower()][match.group(2)] = path
        lonely = sorted(set(sides["left"]) ^ set(sides["right"]))
        if lonely:
            side = "left" if lonely[0] in sides["left"] else "right"
            raise DataError(f"{sides[side][lonely[0]]}: has no {'right' if side == 'left' else 'left'} image with the same number; name pairs leftNN/rightNN.")
        pairs = [(key, sides["left"][key], sides["right"][key]) for key in sorted(sides["left"])]
    if not pairs:
        raise DataError(f"{folder}: no stereo pairs found (expected left/ and right/ folders, or leftNN/rightNN images).")
    return pairs


def read_image(path: Path) -> np.ndarray:
    """An image file -> HxWx3 uint8 BGR (grey promoted to three channels, 16-bit scaled to 8)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: image not found.") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, not an image.") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc.__class__.__name__}).") from None
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if data else None
    if image is None:
        raise DataError(f"{path}: not a readable image.")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return np.ascontiguousarray(image)


def read_pair(left: Path, right: Path) -> tuple[np.ndarray, np.ndarray]:
    """Both views, refused when their sizes differ."""
    a, b = read_image(left), read_image(right)
    if a.shape != b.shape:
        raise DataError(f"{right}: {b.shape[1]}x{b.shape[0]} differs from the left image's {a.shape[1]}x{a.shape[0]} ({left}).")
    return a, b

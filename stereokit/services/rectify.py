"""`stereokit rectify`: raw pairs -> rectified pairs with a rig."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import BaseModel

from stereokit.camera.rectify import Rectifier
from stereokit.camera.rig import Rig, load_rig
from stereokit.data.pairs import find_pairs, read_pair
from stereokit.engine.plots import png_bytes
from stereokit.errors import StereokitError
from stereokit.paths import folder_to_write
from stereokit.progress import progress_bar
from stereokit.runs import atomic_write_bytes


class RectifyResult(BaseModel):
    out: Path
    pairs: int
    size: tuple[int, int]  # width, height of what was written
    cropped: tuple[int, int, int, int] | None  # x, y, w, h of the valid window, when --crop
    written: list[Path]


def check_size(rig: Rig, image: np.ndarray, path: Path) -> None:
    """Refuse an image the rig was not calibrated for (its K would be wrong)."""
    if (image.shape[1], image.shape[0]) != tuple(rig.image_size):
        raise StereokitError(f"{path}: {image.shape[1]}x{image.shape[0]} is not the rig's image size "
                             f"{rig.image_size[0]}x{rig.image_size[1]}; calibrate at this size or resize (docs/cameras.md).")


def run_rectify(rig_path: Path, save_path: Path, imgl: Path | None = None, imgr: Path | None = None,
                pairs_dir: Path | None = None, crop: bool = False, show_progress: bool = True) -> RectifyResult:
    if (imgl is None) != (imgr is None) or (imgl is None) == (pairs_dir is None):
        raise StereokitError("give either --imgl and --imgr (one pair) or --pairs DIR (a folder of pairs).")
    rig = load_rig(rig_path)
    out = folder_to_write(Path(save_path), "--save-path")
    if pairs_dir is not None:
        jobs = [(name, l, r) for name, l, r in find_pairs(Path(pairs_dir))]
    else:
        jobs = [("", Path(imgl), Path(imgr))]  # type: ignore[arg-type]
    # read and check every pair before writing any
    loaded = []
    for name, l, r in jobs:
        left, right = read_pair(l, r)
        check_size(rig, left, l)
        loaded.append((name, l, r))
    rectifier = Rectifier.of(rig)
    written: list[Path] = []
    size = tuple(rig.image_size)
    with progress_bar("rectify", len(loaded), enabled=show_progress and len(loaded) > 1) as advance:
        for name, l, r in loaded:
            left, right = rectifier(*read_pair(l, r), crop=crop)
            size = (left.shape[1], left.shape[0])
            if name:
                targets = (out / "left" / f"{name}.png", out / "right" / f"{name}.png")
            else:
                targets = (out / "left.png", out / "right.png")
            for target, image in zip(targets, (left, right)):
                atomic_write_bytes(target, png_bytes(image))
                written.append(target)
            advance()
    return RectifyResult(out=out, pairs=len(loaded), size=size, cropped=rectifier.common_roi() if crop else None, written=written)

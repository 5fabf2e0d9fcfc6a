"""ETH3D two-view: two_view_training/<scene>/{im0.png, im1.png, calib.txt} with the ground truth in
two_view_training_gt/<scene>/{disp0GT.pfm, mask0nocc.png}: Middlebury 2014's layout, split in two trees."""

from __future__ import annotations

from pathlib import Path

from stereokit.data.benchmark import BenchmarkSample
from stereokit.data.middlebury import read_scene_2014
from stereokit.errors import DataError


def read_eth3d(folder: Path) -> list[BenchmarkSample]:
    """The folder holding two_view_training/ and two_view_training_gt/, or one scene folder with its ground truth."""
    folder = Path(folder)
    images, gt = folder / "two_view_training", folder / "two_view_training_gt"
    if images.is_dir():
        if not gt.is_dir():
            raise DataError(f"{gt}: missing (ETH3D's ground truth, two_view_training_gt/, beside two_view_training/).")
        scenes = sorted(p for p in images.iterdir() if p.is_dir())
        if not scenes:
            raise DataError(f"{images}: no scenes.")
        return [read_scene_2014(scene, gt / scene.name) for scene in scenes]
    if (folder / "im0.png").is_file():
        return [read_scene_2014(folder)]
    raise DataError(f"{folder}: not an ETH3D folder (expected two_view_training/ and two_view_training_gt/).")

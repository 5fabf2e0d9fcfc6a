"""Generated scenes written in each real benchmark's exact layout and encodings."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from stereokit.data.pfm import write_pfm
from stereokit.data.synth import SceneOptions, render_scene

OPTIONS = SceneOptions(min_objects=3, max_objects=6, noise=1.0, blur=0.3)
FOCAL, BASELINE_MM, DOFFS = 700.0, 120.0, 13.5


def scene(seed: int, h: int = 64, w: int = 128, maxdisp: float = 24):  # type: ignore[no-untyped-def]
    return render_scene(np.random.default_rng(seed), h, w, maxdisp, OPTIONS)


def write_middlebury_2014(folder: Path, seed: int, gt_name: str = "disp0GT.pfm", gt_dir: Path | None = None) -> dict[str, np.ndarray]:
    """im0/im1/calib.txt; the PFM with inf where unknown; mask0nocc 255/128/0. Returns the truth."""
    s = scene(seed)
    folder.mkdir(parents=True, exist_ok=True)
    gt_dir = gt_dir or folder
    gt_dir.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(folder / "im0.png"), s.left)
    cv2.imwrite(str(folder / "im1.png"), cv2.cvtColor(s.right, cv2.COLOR_BGR2GRAY))  # a grey view is promoted
    h, w = s.disp.shape
    (folder / "calib.txt").write_text(
        f"cam0=[{FOCAL} 0 {w / 2}; 0 {FOCAL} {h / 2}; 0 0 1]\ncam1=[{FOCAL} 0 {w / 2 + DOFFS}; 0 {FOCAL} {h / 2}; 0 0 1]\n"
        f"doffs={DOFFS}\nbaseline={BASELINE_MM}\nwidth={w}\nheight={h}\nndisp=32\nisint=0\nvmin=1\nvmax=24\n")
    unknown = np.zeros_like(s.nonoccluded)
    unknown[:4, :] = True  # a band with no ground truth
    disp = np.where(unknown, np.inf, s.disp).astype(np.float32)
    write_pfm(gt_dir / gt_name, disp)
    mask = np.where(unknown, 0, np.where(s.nonoccluded, 255, 128)).astype(np.uint8)
    cv2.imwrite(str(gt_dir / "mask0nocc.png"), mask)
    return {"disp": s.disp, "valid": ~unknown, "nonocc": ~unknown & s.nonoccluded, "left": s.left}


def write_kitti(root: Path, year: int, frames: int = 2, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """training/{colored_0,colored_1 | image_2,image_3}, disp_occ(_0), disp_noc(_0), calib files."""
    names = {2012: ("colored_0", "colored_1", "disp_occ", "disp_noc", "calib"),
             2015: ("image_2", "image_3", "disp_occ_0", "disp_noc_0", "calib_cam_to_cam")}[year]
    t = root / "training"
    for d in names:
        (t / d).mkdir(parents=True, exist_ok=True)
    truths = []
    for i in range(frames):
        s = scene(seed + i)
        name = f"{i:06d}_10.png"
        cv2.imwrite(str(t / names[0] / name), s.left)
        cv2.imwrite(str(t / names[1] / name), s.right)
        cv2.imwrite(str(t / names[0] / f"{i:06d}_11.png"), s.left)  # the other frame, no ground truth
        sparse = np.random.default_rng(seed + 100 + i).random(s.disp.shape) < 0.3  # LiDAR-like: 30% measured
        q = np.round(s.disp * 256).astype(np.uint16)
        occ = np.where(sparse, q, 0).astype(np.uint16)
        noc = np.where(sparse & s.nonoccluded, q, 0).astype(np.uint16)
        cv2.imwrite(str(t / names[2] / name), occ)
        cv2.imwrite(str(t / names[3] / name), noc)
        p2 = f"{FOCAL} 0 60 {FOCAL * 0.06} 0 {FOCAL} 30 0 0 0 1 0"
        p3 = f"{FOCAL} 0 60 {-FOCAL * 0.48} 0 {FOCAL} 30 0 0 0 1 0"
        if year == 2012:
            text = f"P0: {p2}\nP1: {p3}\nP2: {p2}\nP3: {p3}\n"
        else:
            text = f"calib_time: 09-Jan-2012 13:57:47\nP_rect_02: {p2}\nP_rect_03: {p3}\n"
        (t / names[4] / f"{i:06d}.txt").write_text(text)
        truths.append({"disp": q.astype(np.float32) / 256, "valid": occ > 0, "nonocc": noc > 0})
    return truths


def write_eth3d(root: Path, scenes: int = 2) -> list[dict[str, np.ndarray]]:
    return [write_middlebury_2014(root / "two_view_training" / f"scene_{i}", 40 + i,
                                  gt_dir=root / "two_view_training_gt" / f"scene_{i}") for i in range(scenes)]


def write_middlebury_2005(folder: Path, seed: int = 7) -> dict[str, np.ndarray]:
    """Third size: disp1.png holds 3 x disparity (8-bit), 0 = unknown; dmin.txt."""
    s = scene(seed, 96, 160, 24)
    folder.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(folder / "view1.png"), s.left)
    cv2.imwrite(str(folder / "view5.png"), s.right)
    stored = np.clip(np.round(s.disp * 3), 0, 255).astype(np.uint8)
    stored[:, :3] = 0
    cv2.imwrite(str(folder / "disp1.png"), stored)
    (folder / "dmin.txt").write_text("240\n")
    return {"disp": stored.astype(np.float32) / 3, "valid": stored > 0}

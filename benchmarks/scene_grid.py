"""Write docs/images/synth_grid.jpg: generated scenes (left | right | disparity), default options and the demo's.

Run: python benchmarks/scene_grid.py [--out PATH]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from stereokit.data.synth import SceneOptions, render_scene
from stereokit.services.demo import SCENES


def row(seed: int, options: SceneOptions, label: str, maxdisp: float = 96) -> np.ndarray:
    scene = render_scene(np.random.default_rng(seed), 192, 384, maxdisp, options)
    disp = cv2.applyColorMap(np.clip(scene.disp / maxdisp * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_TURBO)
    panel = np.concatenate([scene.left, scene.right, disp], axis=1)
    cv2.putText(panel, label, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return panel


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "images" / "synth_grid.jpg")
    out = parser.parse_args().out
    rows = [row(s, SceneOptions(), f"default options, seed {s}") for s in range(4)]
    rows += [row(s, SCENES, f"demo options, seed {s}") for s in range(2)]
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), np.concatenate(rows, axis=0), [cv2.IMWRITE_JPEG_QUALITY, 85])
    print(out)


if __name__ == "__main__":
    main()

"""What infer does to the network's disparity after it (stereokit/engine/cleanup.py): how wrong the
model is in the strip at the left edge that the right view cannot see, which rule for it and which
median infer keeps (docs/performance.md, "Cleaning the disparity"). Chosen on bench_scale's seed-77
scenes (its docstring makes them); Motorcycle is scored beside them for the record, never chosen on.

    python benchmarks/bench_cleanup.py --data data/tune/SceneFlow --picture cleanup.png

The model runs once per scene as infer runs it but raw (`--raw`); each rule is then applied to that
same map. Rules for a pixel x with disparity d where x < d (its match would fall left of the right
view): `neighbour` takes the nearest pixel to its right on the row that is seen; `larger` the larger of
the two; `smaller` the smaller (Middlebury's background fill); then `larger` followed by a 3x3 median
(infer's) or a 5x5 one. EPE / bad-2 / bad-3 over every pixel with ground truth, and over the strip
alone (pixels whose true match is out of view). --picture writes, for the first scene of each size and
each Motorcycle size, one row: left | ground truth | the network's map | cleaned as infer cleans it |
the two errors (0-5 px).
"""

from __future__ import annotations

import argparse
import platform
from datetime import date
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
from bench_real import SIZES
from bench_scale import resized_scene

from stereokit.data.real_pairs import motorcycle
from stereokit.data.sceneflow import load_sample, read_split
from stereokit.engine.cleanup import clean_disparity
from stereokit.engine.metrics import BenchmarkMetrics
from stereokit.engine.plots import colorize, write_png
from stereokit.engine.out_of_view import out_of_view, raise_out_of_view, toward_seen_neighbour
from stereokit.progress import progress_bar
from stereokit.services.predictors import open_predictor


RULES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "none (the network's values)": lambda d: d,
    "neighbour": lambda d: toward_seen_neighbour(d, lambda own, seen: seen),
    "larger": raise_out_of_view,
    "smaller": lambda d: toward_seen_neighbour(d, np.minimum),
    "larger, 3x3 median (infer's)": clean_disparity,
    "larger, 5x5 median": lambda d: cv2.medianBlur(raise_out_of_view(d), 5),
}


def strip_of(gt: np.ndarray) -> np.ndarray:
    """Pixels whose true match lies left of the right view's first column."""
    return (gt > 0) & out_of_view(gt)


def score(pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, dict[str, float]]:
    """pairs of (network map, ground truth) -> per rule: all pixels (per image) and the strip (pooled)."""
    out = {}
    for name, rule in RULES.items():
        metrics, errors, signed = BenchmarkMetrics(), [], []
        for disp, gt in pairs:
            fixed = rule(disp)
            metrics.update(fixed, gt, gt > 0)
            strip = strip_of(gt)
            errors.append(np.abs(fixed - gt)[strip])
            signed.append((fixed - gt)[strip])
        strip_err, strip_signed = np.concatenate(errors), np.concatenate(signed)
        out[name] = {**metrics.summary(), "strip_share": strip_err.size / sum(int((g > 0).sum()) for _, g in pairs),
                     "strip_epe": float(strip_err.mean()), "strip_bias": float(strip_signed.mean()),
                     "strip_bad2": float((strip_err > 2).mean())}
    return out


def picture_row(left: np.ndarray, disp: np.ndarray, gt: np.ndarray, width: int = 320) -> np.ndarray:
    """left | ground truth | network | cleaned as infer cleans it | |error| of each (0-5 px), each panel `width` wide."""
    fixed, valid = clean_disparity(disp), gt > 0
    vmax = float(gt[valid].max())
    panels = [left, colorize(np.where(valid, gt, np.nan), vmax), colorize(disp, vmax), colorize(fixed, vmax)]
    panels += [colorize(np.where(valid, np.abs(d - gt), np.nan), 5.0, cv2.COLORMAP_HOT) for d in (disp, fixed)]
    h = round(left.shape[0] * width / left.shape[1])
    return np.concatenate([cv2.resize(p, (width, h), interpolation=cv2.INTER_AREA) for p in panels], axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="the seed-77 scenes (a SceneFlow-layout tree; its test list is read)")
    parser.add_argument("--model", default=None, help="default: the shipped model")
    parser.add_argument("--sizes", default="0.5,1")
    parser.add_argument("--pairs", type=int, default=0, help="use the first N scenes (0: all)")
    parser.add_argument("--real-sizes", default="half,full", help="Motorcycle sizes to score beside them ('' for none)")
    parser.add_argument("--picture", type=Path, default=None, help="write the picture here (a .png)")
    args = parser.parse_args()
    predictor = open_predictor(args.model)
    predictor.raw = True
    samples, _ = read_split(args.data, "test")
    samples = samples[: args.pairs or None]
    sizes = [float(s) for s in args.sizes.split(",")]
    real = [s for s in args.real_sizes.split(",") if s]
    tables: dict[str, dict[str, dict[str, float]]] = {}
    rows: list[np.ndarray] = []
    with progress_bar("bench_cleanup", len(sizes) * len(samples) + len(real)) as advance:
        for size in sizes:
            pairs = []
            for sample in samples:
                left, right, gt = resized_scene(load_sample(args.data, sample), size)
                pairs.append((predictor(left, right)[0], gt))
                if len(pairs) == 1:
                    rows.append(picture_row(left, *pairs[0]))
                advance()
            tables[f"seed-77 scenes at {size:g}"] = score(pairs)
        for size in real:
            pair = motorcycle(SIZES[size])
            disp = predictor(pair["left"], pair["right"])[0]
            tables[f"Motorcycle {size} (not chosen on)"] = score([(disp, pair["disp"])])
            rows.append(picture_row(pair["left"], disp, pair["disp"]))
            advance()
    if args.picture is not None and rows:
        width = max(r.shape[1] for r in rows)
        write_png(args.picture, np.concatenate([cv2.copyMakeBorder(r, 0, 4, 0, width - r.shape[1], cv2.BORDER_CONSTANT) for r in rows]))
    print(f"{predictor.name}, {platform.machine()} {platform.processor()}, {date.today()}")
    for title, rows in tables.items():
        share = next(iter(rows.values()))["strip_share"]
        print(f"\n{title} (the strip: {share:.1%} of the pixels with ground truth)")
        print("| rule | EPE px / bad-2 / bad-3 | strip: EPE px / mean error px / bad-2 |")
        print("|---|---|---|")
        for name, m in rows.items():
            print(f"| {name} | {m['epe']:.3f} / {m['bad2']:.2%} / {m['bad3']:.2%} | "
                  f"{m['strip_epe']:.2f} / {m['strip_bias']:+.2f} / {m['strip_bad2']:.1%} |")


if __name__ == "__main__":
    main()

"""Auto scale against the pair's own size (and fixed factors, and with --multiscale infer's median of
three scales), on generated scenes resized to several sizes: the tables in docs/performance.md, "Auto
scale" and "Multiscale". Never run it on a test split you report on.

    stereokit synth --out data/tune/SceneFlow --num-train 1 --num-test 48 --height 256 --width 512 --maxdisp 192 \
      --seed 77 --scene photo_share=0.5 --scene object_curvature=0.08 --scene "foreground=[0.02, 0.75]" \
      --scene "background=[0.01, 0.25]" --scene weak_share=0.05 --scene repetitive_share=0.05
    python benchmarks/bench_scale.py --data data/tune/SceneFlow --sizes 0.25,0.5,1,1.5

Each scene is resized by SIZE (views area-averaged down, bilinear up; ground truth nearest, times
SIZE), then run by the model as infer runs it. EPE / bad-2 / bad-3 over every pixel with ground truth.
"""

from __future__ import annotations

import argparse
import platform
from datetime import date
from pathlib import Path

import cv2
import numpy as np

from stereokit.data.sceneflow import load_sample, read_split
from stereokit.engine.input_scale import resize_view, scaled_size
from stereokit.engine.metrics import BenchmarkMetrics
from stereokit.progress import progress_bar
from stereokit.services.predictors import PairPredictor, open_predictor


def resized_scene(sample: dict[str, np.ndarray], size: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    h, w = sample["disp"].shape
    hw = scaled_size(h, w, size)
    gt = cv2.resize(sample["disp"], (hw[1], hw[0]), interpolation=cv2.INTER_NEAREST) * np.float32(hw[1] / w)
    return resize_view(sample["imgl"], hw), resize_view(sample["imgr"], hw), gt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="a SceneFlow-layout tree (stereokit synth); its test list is read")
    parser.add_argument("--model", default=None, help="default: the shipped model")
    parser.add_argument("--sizes", default="0.25,0.5,1,1.5")
    parser.add_argument("--factors", default="", help="fixed --scale factors to compare too, e.g. 2,3")
    parser.add_argument("--pairs", type=int, default=0, help="use the first N pairs (0: all)")
    parser.add_argument("--multiscale", action="store_true", help="also auto scale with infer's --multiscale (three passes a pair)")
    args = parser.parse_args()
    samples, _ = read_split(args.data, "test")
    samples = samples[: args.pairs or None]
    models: dict[str, PairPredictor] = {"own size": open_predictor(args.model, scale=1.0), "auto": open_predictor(args.model)}
    for f in filter(None, args.factors.split(",")):
        models[f"x{float(f):g}"] = open_predictor(args.model, scale=float(f))
    if args.multiscale:
        models["auto, multiscale"] = open_predictor(args.model)
        models["auto, multiscale"].multiscale = True
    sizes = [float(s) for s in args.sizes.split(",")]
    rows: dict[float, dict[str, dict[str, float]]] = {}
    with progress_bar("bench_scale", len(sizes) * len(samples)) as advance:
        for size in sizes:
            metrics = {name: BenchmarkMetrics() for name in models}
            factors: list[float] = []
            for sample in samples:
                left, right, gt = resized_scene(load_sample(args.data, sample), size)
                for name, predictor in models.items():
                    metrics[name].update(predictor(left, right)[0], gt, gt > 0)
                    if name == "auto":
                        factors.append(predictor.last_scale)
                advance()
            rows[size] = {name: m.summary() for name, m in metrics.items()}
            rows[size]["auto"]["mean_factor"] = float(np.mean(factors))
    print(f"{len(samples)} scenes of {args.data}, {platform.machine()} {platform.processor()}, {date.today()}; EPE px / bad-2 / bad-3")
    print("| scenes at | " + " | ".join(models) + " |")
    print("|---|" + "---|" * len(models))
    for size, by_model in rows.items():
        cells = [f"{r['epe']:.3f} / {r['bad2']:.1%} / {r['bad3']:.1%}" for r in by_model.values()]
        cells[1] += f" ({by_model['auto']['mean_factor']:.2f}x)"
        print(f"| {size:g} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

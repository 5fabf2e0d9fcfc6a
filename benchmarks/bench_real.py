"""Real photographs: the shipped model (float, and through a run's calibrated, QAT and compiled int8)
against OpenCV's filled SGBM on Middlebury's Motorcycle, at scikit-image's size and at half size.

    python benchmarks/bench_real.py                           # the shipped float model
    python benchmarks/bench_real.py --run runs/shipped        # and that run's calibration, qat, compiled
    python benchmarks/bench_real.py --model runs/demo/compile/model.hbm --pictures docs/images

EPE, bad-2 and bad-3 over every pixel with ground truth (per image; one image per row). The models run
as infer runs them (--scale auto: stereokit/engine/input_scale.py; cleaned: stereokit/engine/cleanup.py),
and the float model once more raw (not cleaned), with --multiscale, and at the pair's own size; SGBM at the pair's own size and at the float model's auto scale (the better of
the two is the bar). A compiled model has one input size and pads every pair to it, which moves the
prediction near the bottom and right edges: the run's float model padded the same way is the row to
hold it to. Pictures: left | ground truth | SGBM | stereokit | stereokit's error (0-5 px).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import date
from pathlib import Path

import cv2
import numpy as np

from stereokit.data.real_pairs import motorcycle, sgbm_filled
from stereokit.engine.input_scale import disparity_back, parse_scale, resize_view, scaled_size
from stereokit.engine.metrics import BenchmarkMetrics
from stereokit.engine.plots import colorize, write_png
from stereokit.services.predictors import PairPredictor, open_predictor, stage_predictor

SIZES = {"half": 0.5, "full": 1.0}


def score(pred: np.ndarray, pair: dict[str, np.ndarray]) -> dict[str, float]:
    m = BenchmarkMetrics()
    return m.update(pred, pair["disp"], pair["valid"])


def predictors(args: argparse.Namespace) -> dict[str, PairPredictor]:
    out = {"stereokit float": open_predictor(args.model, scale=args.scale)}
    out["stereokit float, raw"] = raw = open_predictor(args.model, scale=args.scale)
    raw.raw = True  # the network's map as it comes, not cleaned (stereokit/engine/cleanup.py)
    out["stereokit float, multiscale"] = multi = open_predictor(args.model, scale=args.scale)
    multi.multiscale = True  # infer's --multiscale: the median of three scales
    if args.scale != 1.0:
        out["stereokit float, the pair's own size"] = open_predictor(args.model, scale=1.0)
    if args.run is not None:
        for stage in ("calibration", "qat"):
            if (args.run / stage / "stage.json").is_file():
                out[f"stereokit {stage} int8"] = stage_predictor(args.run, stage, args.scale)
        for hbm in sorted(args.run.glob("compile*/model.hbm")):  # compile/, and compile-ort/ or compile-openvino/
            name = "stereokit compiled int8" + ("" if hbm.parent.name == "compile" else f" ({hbm.parent.name})")
            out[name] = compiled = open_predictor(hbm, "cpu", args.scale)
            if compiled.fit and (args.run / "float" / "stage.json").is_file():  # what quantization alone costs: the same padded input
                h, w = compiled.fit
                out[f"stereokit float at {hbm.parent.name}'s input {w}x{h}"] = stage_predictor(args.run, "float", args.scale, compiled.fit)
    return out


def sgbm_at(pair: dict[str, np.ndarray], u: float) -> np.ndarray:
    """Filled SGBM on the pair resized by u, its disparity brought back to the pair's size."""
    h, w = pair["disp"].shape
    size = scaled_size(h, w, u)
    top = float(pair["disp"][pair["valid"]].max()) * u
    return disparity_back(sgbm_filled(resize_view(pair["left"], size), resize_view(pair["right"], size), top), (h, w))


def picture(pair: dict[str, np.ndarray], sgbm: np.ndarray, ours: np.ndarray) -> np.ndarray:
    vmax = float(pair["disp"][pair["valid"]].max())
    gt = colorize(np.where(pair["valid"], pair["disp"], np.nan), vmax)
    err = colorize(np.where(pair["valid"], np.abs(ours - pair["disp"]), np.nan), 5.0, cv2.COLORMAP_HOT)
    return np.concatenate([pair["left"], gt, colorize(sgbm, vmax), colorize(ours, vmax), err], axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="default: the shipped model")
    parser.add_argument("--run", type=Path, default=None, help="a run made from the same weights, for the int8 rows")
    parser.add_argument("--sizes", default="half,full")
    parser.add_argument("--pictures", type=Path, default=None, help="write one picture per size here")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here too")
    parser.add_argument("--scale", type=parse_scale, default=None, help="auto (default) or a factor, as infer's --scale")
    args = parser.parse_args()
    models = predictors(args)
    rows: dict[str, dict[str, dict[str, float]]] = {}
    for size in args.sizes.split(","):
        pair = motorcycle(SIZES[size])
        top = float(pair["disp"][pair["valid"]].max())
        t = time.perf_counter()
        sgbm = sgbm_filled(pair["left"], pair["right"], top)
        rows.setdefault("OpenCV SGBM, filled", {})[size] = {**score(sgbm, pair), "ms": 1000 * (time.perf_counter() - t)}
        float_pred = None
        for name, predictor in models.items():
            t = time.perf_counter()
            pred, handling = predictor(pair["left"], pair["right"])
            rows.setdefault(name, {})[size] = {**score(pred, pair), "ms": 1000 * (time.perf_counter() - t), "handling": handling}
            float_pred = pred if float_pred is None else float_pred
        u = models["stereokit float"].last_scale  # the factor its call above ran the pair at
        if u != 1.0:
            rows.setdefault("OpenCV SGBM, filled, at the float model's scale", {})[size] = {**score(sgbm_at(pair, u), pair), "scale": u}
        if args.pictures is not None and float_pred is not None:
            args.pictures.mkdir(parents=True, exist_ok=True)
            write_png(args.pictures / f"bench_real_motorcycle_{size}.png", picture(pair, sgbm, float_pred))
    sizes = args.sizes.split(",")
    print(f"Motorcycle (Middlebury, scikit-image's pair), {platform.machine()} {platform.processor()}, {date.today()}")
    print("| model | " + " | ".join(f"{s}: EPE px / bad-2 / bad-3" for s in sizes) + " |")
    print("|---|" + "---|" * len(sizes))
    for name, by_size in rows.items():
        cells = [f"{by_size[s]['epe']:.3f} / {by_size[s]['bad2']:.1%} / {by_size[s]['bad3']:.1%}" for s in sizes]
        print(f"| {name} | " + " | ".join(cells) + " |")
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

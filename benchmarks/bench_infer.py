"""Inference latency at 544x960 on this CPU: torch float eager, torch float through stereokit's
inference path (BN folded, channels_last, Conv3d on oneDNN), ONNX Runtime float, and the compiled
integer model, in one run, for the recipe model (or --demo-sized); and one aggregation Conv3d alone.

Run by hand:  python benchmarks/bench_infer.py [--runs 3] [--height 544 --width 960]
The weights are random and calibrated on random inputs: latency does not depend on them.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from typing import Callable

import torch

from stereokit.allocator import keep_large_blocks
from stereokit.config import load_config
from stereokit.deploy.compiler import lower_to_integer, op_counts
from stereokit.deploy.onnx_export import export_onnx
from stereokit.deploy.perf import measure_latency_ms
from stereokit.models import DeployModel, build_stereonet
from stereokit.models.inference import OneDnnConv3d, prepare_for_inference
from stereokit.quant.fold import export_copy
from stereokit.quant.prepare import prepare_quant_model, set_fake_quant, set_observers
from stereokit.services.demo import DEMO_OVERRIDES

DEMO = [o for o in DEMO_OVERRIDES if o.startswith("model.")]


def median_ms(fn: Callable[[], object], runs: int) -> float:
    with torch.no_grad():
        fn()
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            fn()
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    kept = keep_large_blocks()  # as every stereokit command does (STEREOKIT_MALLOC=system to compare)
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--height", type=int, default=544)
    parser.add_argument("--width", type=int, default=960)
    parser.add_argument("--demo", action="store_true", help="the demo-sized model instead of the recipe")
    args = parser.parse_args()
    cfg = load_config(None, (DEMO if args.demo else []) + [f"deploy.input_height={args.height}", f"deploy.input_width={args.width}"])
    torch.manual_seed(0)
    model = build_stereonet(cfg.model).eval()
    x = torch.randn(1, 3, args.height, args.width)

    deploy = DeployModel(model).eval()
    torch_ms = median_ms(lambda: deploy(x, x), args.runs)
    prepared = DeployModel(prepare_for_inference(model)).eval()
    prepared_ms = median_ms(lambda: prepared(x, x), args.runs)
    conv = torch.nn.Conv3d(cfg.model.agg_channels, cfg.model.agg_channels, 3, padding=1)
    s = cfg.model.cost_scale
    volume = torch.randn(1, cfg.model.agg_channels, cfg.model.num_disparities, args.height // s, args.width // s)
    conv_ms = median_ms(lambda: conv(volume), 5 * args.runs)
    onednn_ms = median_ms(lambda: OneDnnConv3d(conv)(volume), 5 * args.runs)

    float_onnx = export_onnx(DeployModel(model), args.height, args.width, 17, {})
    quant = prepare_quant_model(model, cfg).eval()
    set_fake_quant(quant, False)
    with torch.no_grad():
        for _ in range(2):
            quant(torch.randn(1, 3, args.height, args.width), torch.randn(1, 3, args.height, args.width))
    set_observers(quant, False, weights_too=True)
    set_fake_quant(quant, True)
    qdq = export_onnx(DeployModel(export_copy(quant)), args.height, args.width, 17, {})
    compiled = lower_to_integer(qdq)
    onnx_ms = measure_latency_ms(float_onnx, args.height, args.width, runs=args.runs)
    int_ms = measure_latency_ms(compiled, args.height, args.width, runs=args.runs)
    counts = op_counts(compiled)
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads; "
          f"{'demo-sized' if args.demo else 'recipe'} model at {args.width}x{args.height}, median of {args.runs}; "
          f"allocator keeps large blocks: {kept}")
    print("| model | latency (ms) | vs torch float |")
    print("|---|---|---|")
    for name, ms in (("torch float eager", torch_ms), ("torch float, inference path", prepared_ms), ("ONNX Runtime float", onnx_ms),
                     ("compiled int8 (ORT QLinear ops)", int_ms)):
        print(f"| {name} | {ms:.1f} | {torch_ms / ms:.2f}x |")
    print(f"torch inference path / ONNX Runtime float: {prepared_ms / onnx_ms:.2f}x (eager: {torch_ms / onnx_ms:.2f}x)")
    print(f"one aggregation Conv3d {tuple(volume.shape)}: eager {conv_ms:.1f} ms, oneDNN {onednn_ms:.1f} ms ({conv_ms / onednn_ms:.1f}x)")
    print(f"compiled graph: {counts.get('QLinearConv', 0)} QLinearConv, {counts.get('Conv', 0)} float Conv")


if __name__ == "__main__":
    main()

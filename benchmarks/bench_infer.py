"""Inference latency at 544x960 on this CPU: torch float eager, ONNX Runtime float, and the
compiled integer model, in one run, for the recipe model (or --demo-sized).

Run by hand:  python benchmarks/bench_infer.py [--runs 3] [--height 544 --width 960]
The weights are random and calibrated on random inputs: latency does not depend on them.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from stereokit.config import load_config
from stereokit.deploy.compiler import lower_to_integer, op_counts
from stereokit.deploy.onnx_export import export_onnx
from stereokit.deploy.perf import measure_latency_ms
from stereokit.models import DeployModel, build_stereonet
from stereokit.quant.fold import export_copy
from stereokit.quant.prepare import prepare_quant_model, set_fake_quant, set_observers

DEMO = ["model.maxdisp=64", "model.out_channels=[16, 16, 32, 64, 64, 16]", "model.groups=16",
        "model.agg_channels=16", "model.agg_blocks=2", "model.refine_channels=16", "model.refine_dilations=[1, 2, 4, 1]"]


def main() -> None:
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

    with torch.no_grad():
        deploy = DeployModel(model).eval()
        deploy(x, x)
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            deploy(x, x)
            times.append((time.perf_counter() - start) * 1000)
    torch_ms = statistics.median(times)

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
          f"{'demo-sized' if args.demo else 'recipe'} model at {args.width}x{args.height}, median of {args.runs}")
    print("| model | latency (ms) | vs torch float |")
    print("|---|---|---|")
    for name, ms in (("torch float eager", torch_ms), ("ONNX Runtime float", onnx_ms), ("compiled int8 (ORT QLinear ops)", int_ms)):
        print(f"| {name} | {ms:.1f} | {torch_ms / ms:.2f}x |")
    print(f"compiled graph: {counts.get('QLinearConv', 0)} QLinearConv, {counts.get('Conv', 0)} float Conv")


if __name__ == "__main__":
    main()

"""Inference latency at 544x960 on this CPU: torch float eager, torch float through stereokit's
inference path (BN folded, channels_last, Conv3d on oneDNN), ONNX Runtime float, the compiled
model for each runtime installed (ONNX Runtime's QLinear graph, OpenVINO from the same QDQ IR), and
OpenVINO on the float ONNX, in one run, for the recipe model (or --demo-sized); each row beside the
CPU's int8 peak; and one aggregation Conv3d alone.

Run by hand:  python benchmarks/bench_infer.py [--runs 3] [--height 544 --width 960]
Smoke run (CI): python benchmarks/bench_infer.py --runs 1 --height 64 --width 128 --demo
The weights are random and calibrated on random inputs: latency does not depend on them.
"""

from __future__ import annotations

import argparse
import platform

import torch

from stereokit.allocator import keep_large_blocks
from stereokit.config import load_config
from stereokit.deploy import openvino_runtime
from stereokit.deploy.compiler import lower_to_integer, op_counts
from stereokit.deploy.onnx_export import export_onnx
from stereokit.deploy.perf import measure_latency_ms, median_ms
from stereokit.models import DeployModel, build_stereonet
from stereokit.models.inference import OneDnnConv3d, prepare_for_inference
from stereokit.quant.fold import export_copy
from stereokit.quant.prepare import prepare_quant_model, set_fake_quant, set_observers
from stereokit.services.calops import run_calops
from stereokit.services.compile import fastest_runtime
from stereokit.services.demo import SMALL_MODEL

DEMO = SMALL_MODEL  # the small from-scratch model


def int8_peak() -> tuple[float, str]:
    """The CPU's int8 multiply-accumulates per second, from its flags: MACs per cycle and core x cores
    x clock. AMX-INT8 1024 MACs/cycle (a 16x64 tile product per core), AVX-512 VNNI 128 (two ports of
    64 u8 x s8 lanes), AVX-VNNI 64, otherwise AVX2 32 (pmaddubsw)."""
    import os
    import re

    text = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    flags = set(re.search(r"^flags\s*:\s*(.*)$", text, re.M).group(1).split()) if "flags" in text else set()
    mhz = [float(v) for v in re.findall(r"^cpu MHz\s*:\s*([0-9.]+)", text, re.M)]
    clock = (max(mhz) if mhz else 2000.0) * 1e6
    for flag, per_cycle in (("amx_int8", 1024), ("avx512_vnni", 128), ("avx_vnni", 64), ("avx2", 32)):
        if flag in flags:
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
            return per_cycle * cores * clock, f"{flag}: {per_cycle} MACs/cycle x {cores} cores x {clock / 1e9:.2f} GHz"
    return float("nan"), "unknown (no x86 int8 flags found)"


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
    prepared = DeployModel(prepare_for_inference(model)).eval()
    conv = torch.nn.Conv3d(cfg.model.agg_channels, cfg.model.agg_channels, 3, padding=1)
    s = cfg.model.cost_scale
    volume = torch.randn(1, cfg.model.agg_channels, cfg.model.num_disparities, args.height // s, args.width // s)
    with torch.no_grad():
        torch_ms = median_ms(lambda: deploy(x, x), args.runs)
        prepared_ms = median_ms(lambda: prepared(x, x), args.runs)
        conv_ms = median_ms(lambda: conv(volume), 5 * args.runs)
        onednn_ms = median_ms(lambda: OneDnnConv3d(conv)(volume), 5 * args.runs)

    opset = cfg.deploy.opset  # 21: the int16 Q/DQ of the precision map
    float_onnx = export_onnx(DeployModel(model), args.height, args.width, opset, {})
    quant = prepare_quant_model(model, cfg).eval()
    set_fake_quant(quant, False)
    with torch.no_grad():
        for _ in range(2):
            quant(torch.randn(1, 3, args.height, args.width), torch.randn(1, 3, args.height, args.width))
    set_observers(quant, False, weights_too=True)
    set_fake_quant(quant, True)
    qdq = export_onnx(DeployModel(export_copy(quant)), args.height, args.width, opset, {})
    compiled = lower_to_integer(qdq)
    onnx_ms = measure_latency_ms(float_onnx, args.height, args.width, runs=args.runs)
    int_ms = measure_latency_ms(compiled, args.height, args.width, runs=args.runs)
    counts = op_counts(compiled)
    rows = [("torch float eager", torch_ms), ("torch float, inference path", prepared_ms), ("ONNX Runtime float", onnx_ms),
            ("compiled (ort): ONNX Runtime QLinear graph", int_ms)]
    timings = {"ort": int_ms}
    if openvino_runtime.available():
        timings["openvino"] = openvino_runtime.measure_latency_ms(openvino_runtime.convert_ir(qdq), args.height, args.width, runs=args.runs)
        ov_float = openvino_runtime.measure_latency_ms(openvino_runtime.convert_ir(float_onnx), args.height, args.width, runs=args.runs)
        rows += [("compiled (openvino): OpenVINO from the QDQ IR", timings["openvino"]), ("OpenVINO float (f32), the float ONNX", ov_float)]
    default = fastest_runtime(timings)  # what plain `stereokit compile` keeps, by the same rule
    rows.append((f"compiled (default: {default})", timings[default]))
    macs = run_calops(cfg, args.height, args.width).macs
    peak, peak_how = int8_peak()
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads; "
          f"{'demo-sized' if args.demo else 'recipe'} model at {args.width}x{args.height}, median of {args.runs}; "
          f"allocator keeps large blocks: {kept}")
    print(f"int8 peak of this CPU: {peak / 1e12:.2f} TMAC/s ({peak_how}); the model: {macs / 1e9:.2f} GMACs, "
          f"so at most {macs / peak * 1000:.1f} ms")
    print("| model | latency (ms) | vs torch float | share of the int8 peak |")
    print("|---|---|---|---|")
    for name, ms in rows:
        print(f"| {name} | {ms:.1f} | {torch_ms / ms:.2f}x | {macs / (ms / 1000) / peak:.1%} |")
    print(f"torch inference path / ONNX Runtime float: {prepared_ms / onnx_ms:.2f}x (eager: {torch_ms / onnx_ms:.2f}x)")
    print(f"one aggregation Conv3d {tuple(volume.shape)}: eager {conv_ms:.1f} ms, oneDNN {onednn_ms:.1f} ms ({conv_ms / onednn_ms:.1f}x)")
    print(f"compiled graph: {counts.get('QLinearConv', 0)} QLinearConv, {counts.get('Conv', 0)} float Conv")


if __name__ == "__main__":
    main()

"""The performance estimate on a target profile, and measured ONNX Runtime latency on this machine.

Per layer of the IR: MACs, bytes moved (int8 on the accelerator, float32 on the CPU, weights at
int8), and cycles = max(MACs / MACs-per-cycle, bytes / bytes-per-cycle): whichever is larger says
whether the layer is compute- or bandwidth-bound.
"""

from __future__ import annotations

import html
import statistics
import time
from typing import Callable
from dataclasses import asdict, dataclass

import numpy as np
import onnx

from stereokit.deploy.checker import IGNORED, QDQ, CheckReport
from stereokit.deploy.graph import CONV_OPS, Graph, conv_weight_input, node_macs
from stereokit.deploy.providers import make_session
from stereokit.deploy.target import TargetProfile


@dataclass
class LayerCost:
    name: str
    op: str
    device: str
    macs: int
    bytes: int
    cycles: float
    bound: str


def estimate(model: onnx.ModelProto, report: CheckReport, target: TargetProfile) -> list[LayerCost]:
    g = Graph.load(model)
    checked = {n.name: n for n in report.nodes}
    rows = []
    for node in model.graph.node:
        if node.op_type in QDQ or node.op_type in IGNORED:
            continue
        name = node.name or node.op_type
        check = checked.get(name)
        device = check.device if check is not None else "cpu"
        # bytes an activation element costs where the node runs: 1 (8-bit), 2 (int16), 4 (float on the CPU)
        elem = {"int16": 2}.get(check.dtype, 1) if check is not None and device == "accelerator" else 4
        moved = sum(g.numel(i) * elem for i in node.input if i and i not in g.constants)
        moved += sum(g.numel(o) * elem for o in node.output)
        macs = node_macs(g, node)
        if node.op_type in CONV_OPS:
            weight = conv_weight_input(node)
            dq = g.producer.get(weight)
            shape = g.shapes.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else g.shapes.get(weight)
            if shape:
                moved += int(np.prod(shape)) * (1 if device == "accelerator" else 4)
        rate_mac = target.macs_per_cycle if device == "accelerator" else target.cpu_macs_per_cycle
        rate_byte = target.bytes_per_cycle if device == "accelerator" else target.cpu_bytes_per_cycle
        compute, memory = macs / rate_mac, moved / rate_byte
        rows.append(LayerCost(name, node.op_type, device, macs, moved, max(compute, memory), "compute" if compute >= memory else "bandwidth"))
    return rows


def summary(rows: list[LayerCost], target: TargetProfile) -> dict[str, float | int]:
    cycles = sum(r.cycles for r in rows)
    latency_ms = cycles / (target.frequency_mhz * 1e3)
    return {
        "macs": sum(r.macs for r in rows),
        "bytes": sum(r.bytes for r in rows),
        "cycles": cycles,
        "estimated_latency_ms": latency_ms,
        "estimated_fps": 1000.0 / latency_ms if latency_ms > 0 else float("inf"),
        "compute_bound_layers": sum(r.bound == "compute" for r in rows),
        "bandwidth_bound_layers": sum(r.bound == "bandwidth" for r in rows),
        "cpu_cycles_share": sum(r.cycles for r in rows if r.device == "cpu") / cycles if cycles else 0.0,
    }


def median_ms(run: Callable[[], object], runs: int = 5, warmup: int = 1) -> float:
    """Median wall time of `run()` in milliseconds, after `warmup` untimed calls."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def measure_latency_ms(model: bytes, height: int, width: int, runs: int = 5, warmup: int = 1) -> float:
    """Median wall time of one inference with ONNX Runtime on this machine's CPU (the CPU always, so
    numbers from different machines' compiles compare; validate-bpu and infer use the GPU where present)."""
    session = make_session(model, "cpu")
    rng = np.random.default_rng(0)
    feed = {i.name: rng.standard_normal((1, 3, height, width)).astype(np.float32) for i in session.get_inputs()}
    return median_ms(lambda: session.run(None, feed), runs, warmup)


def perf_html(title: str, totals: dict, measured: dict, rows: list[LayerCost]) -> str:
    def table(header: list[str], body: list[list[object]]) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        lines = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in body)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{lines}</tbody></table>"

    fmt = lambda v: f"{v:,.3f}" if isinstance(v, float) else f"{v:,}"  # noqa: E731
    parts = [
        f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}td:first-child{text-align:left}</style>",
        f"<h1>{html.escape(title)}</h1><h2>Estimate on the target</h2>",
        table(["measure", "value"], [[k, fmt(v)] for k, v in totals.items()]),
        "<h2>Measured with ONNX Runtime on this machine (CPU)</h2>",
        table(["model", "latency (ms)"], [[k, fmt(v)] for k, v in measured.items()]),
        "<h2>Per layer</h2>",
        table(["layer", "op", "device", "MACs", "bytes", "cycles", "bound"],
              [[r.name, r.op, r.device, fmt(r.macs), fmt(r.bytes), fmt(round(r.cycles, 1)), r.bound] for r in rows]),
    ]
    return "\n".join(parts)


def rows_json(rows: list[LayerCost]) -> list[dict]:
    return [asdict(r) for r in rows]

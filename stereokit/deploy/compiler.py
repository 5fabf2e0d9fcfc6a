"""Lowering the QDQ IR to an integer graph with ONNX Runtime's graph optimizer.

At ORT_ENABLE_EXTENDED, ORT fuses DequantizeLinear -> op -> QuantizeLinear groups into integer ops
(QLinearConv, QLinearAdd, QLinearMul, QLinearConcat, QLinearAveragePool), folds requantization into
them and removes Q -> DQ pairs; the result is saved as an ONNX graph. ENABLE_ALL would add layout
transforms tied to the compiling CPU, so the shipped graph stays at EXTENDED to remain portable.
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from dataclasses import dataclass

import onnx
import onnxruntime as ort

from stereokit.deploy.checker import CheckReport
from stereokit.deploy.graph import Graph
from stereokit.errors import StereokitError

INTEGER_OPS = {"QLinearConv", "QLinearAdd", "QLinearMul", "QLinearConcat", "QLinearAveragePool",
               "QLinearGlobalAveragePool", "QLinearSigmoid", "QLinearLeakyRelu", "QLinearSoftmax", "ConvInteger", "MatMulInteger"}


def lower_to_integer(qdq_model: bytes) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "lowered.onnx")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = out
        options.log_severity_level = 3
        try:
            ort.InferenceSession(qdq_model, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
            raise StereokitError(f"ONNX Runtime could not lower the model: {str(exc).splitlines()[0]}", exit_code=1) from None
        with open(out, "rb") as f:
            return f.read()


def op_counts(model: bytes) -> dict[str, int]:
    proto = onnx.load_from_string(model)
    return dict(Counter(n.op_type for n in proto.graph.node))


@dataclass
class CompiledNode:
    """One checked IR node and what the lowered graph made of it."""

    name: str
    op: str
    predicted: str  # check's device: accelerator | cpu
    dtype: str
    compiled: str  # the lowered op, "fused" when ORT folded it into a neighbour
    runs: str  # integer | int16-simulation | resize-simulation | float | fused


def confirm_check(report: CheckReport, lowered: bytes) -> list[CompiledNode]:
    """Compare, node by node, what check predicted with what the lowered graph holds.

    A node check put on the accelerator must be integer after lowering (a QLinear op, or data
    movement on integer tensors), fused into a neighbour, or one of two DQ -> op -> Q groups that
    ONNX Runtime runs in float on grid values: any op at int16 (its QLinear ops are 8-bit only),
    and an 8-bit bilinear Resize (its CPU provider drops the Q/DQ around a Resize in nearest mode
    only, whatever the scales). Anything else is a contradiction and raises.
    """
    g = Graph.load(onnx.load_from_string(lowered))
    by_name = {n.name: n for n in g.model.graph.node}
    graph_inputs = {i.name for i in g.model.graph.input}

    memo: dict[str, bool] = {}

    def float_data(node: onnx.NodeProto) -> bool:
        """True when the node computes on float tensors (a DQ, a graph input or a float op feeds it)."""
        if node.op_type.startswith("QLinear") or node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            return False
        if node.name not in memo:
            feeds = [g.producer.get(i) for i in node.input if i]
            memo[node.name] = any(i in graph_inputs for i in node.input) or any(
                p is not None and (p.op_type == "DequantizeLinear" or float_data(p)) for p in feeds)
        return memo[node.name]

    def between_q_and_dq(node: onnx.NodeProto) -> bool:
        feed = g.producer.get(node.input[0])
        users = g.consumers.get(node.output[0], [])
        return feed is not None and feed.op_type == "DequantizeLinear" and [u.op_type for u in users] == ["QuantizeLinear"]

    rows = []
    for checked in report.nodes:
        node = by_name.get(checked.name)
        if node is None:
            rows.append(CompiledNode(checked.name, checked.op, checked.device, checked.dtype, "fused", "fused"))
            continue
        runs = "float" if float_data(node) else "integer"
        if runs == "float" and checked.dtype == "int16":
            runs = "int16-simulation"
        elif runs == "float" and node.op_type == "Resize" and between_q_and_dq(node):
            runs = "resize-simulation"
        if checked.device == "accelerator" and runs == "float":
            raise StereokitError(f"{checked.name}: check put this {checked.op} on the accelerator at {checked.dtype}, but the "
                                 f"compiled graph runs it in float; the IR and the target profile disagree.", exit_code=1)
        rows.append(CompiledNode(checked.name, checked.op, checked.device, checked.dtype, node.op_type, runs))
    return rows


def chains_left(model: bytes) -> int:
    """Q -> DQ -> Q chains the lowering should have removed."""
    g = Graph.load(onnx.load_from_string(model))
    count = 0
    for node in g.model.graph.node:
        if node.op_type == "QuantizeLinear":
            dq = g.producer.get(node.input[0])
            if dq is not None and dq.op_type == "DequantizeLinear" and (q := g.producer.get(dq.input[0])) is not None and q.op_type == "QuantizeLinear":
                count += 1
    return count

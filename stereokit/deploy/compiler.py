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

import onnx
import onnxruntime as ort

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


def float_convs(model: bytes) -> list[str]:
    """Convs left in float after lowering (allowed only inside islands the check named)."""
    proto = onnx.load_from_string(model)
    return [n.name for n in proto.graph.node if n.op_type == "Conv"]


def chains_left(model: bytes) -> int:
    """Q -> DQ -> Q chains the lowering should have removed."""
    proto = onnx.load_from_string(model)
    producer = {o: n for n in proto.graph.node for o in n.output}
    count = 0
    for node in proto.graph.node:
        if node.op_type == "QuantizeLinear":
            dq = producer.get(node.input[0])
            if dq is not None and dq.op_type == "DequantizeLinear" and (q := producer.get(dq.input[0])) is not None and q.op_type == "QuantizeLinear":
                count += 1
    return count

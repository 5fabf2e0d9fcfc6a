"""Export a model to ONNX (the QDQ IR for quantized models) with a static input shape."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

from stereokit.errors import StereokitError

INPUTS = ("imgl", "imgr")
OUTPUT = "disparity"


def export_onnx(model: nn.Module, height: int, width: int, opset: int, metadata: dict[str, str]) -> bytes:
    """Trace `model(imgl, imgr) -> disparity` at 1x3xHxW, check it fully, return the ONNX bytes."""
    example = torch.zeros(1, 3, height, width)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (example, example), buf, input_names=list(INPUTS), output_names=[OUTPUT],
                          opset_version=opset, dynamo=False, do_constant_folding=True)
    proto = onnx.load_from_string(buf.getvalue())
    scalarize_qdq_params(proto)
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, str(value)
    try:
        proto = onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise StereokitError(f"the exported model does not pass onnx.checker: {str(exc).splitlines()[0]}", exit_code=1) from None
    return proto.SerializeToString()


def scalarize_qdq_params(proto: onnx.ModelProto) -> None:
    """Per-tensor scales and zero points as scalars, not 1-element vectors.

    The exporter writes them as shape [1]; ONNX allows both, but ONNX Runtime's QDQ fusions for
    pooling (QLinearAveragePool) and others accept only scalars.
    """
    per_tensor: set[str] = set()
    for node in proto.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and not any(a.name == "axis" for a in node.attribute):
            per_tensor.update(node.input[1:3])
    for init in proto.graph.initializer:
        if init.name in per_tensor and list(init.dims) == [1]:
            del init.dims[:]
    for node in proto.graph.node:
        if node.op_type == "Constant" and node.output[0] in per_tensor:
            for attr in node.attribute:
                if attr.name == "value" and list(attr.t.dims) == [1]:
                    del attr.t.dims[:]


def read_metadata(path: Path) -> dict[str, str]:
    proto = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props}

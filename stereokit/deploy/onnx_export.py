"""Export a model to ONNX (the QDQ IR for quantized models) with a static input shape."""

from __future__ import annotations

import io
import warnings

import onnx
import torch
from onnx import TensorProto, helper, version_converter
from torch import nn

from stereokit.deploy.graph import Graph
from stereokit.errors import StereokitError
from stereokit.quant.fold import ExportFakeQuant16

INPUTS = ("imgl", "imgr")
OUTPUT = "disparity"
INT16_DOMAIN = "stereokit"


# The TorchScript exporter's newest opset; an IR at a later one (int16 Q/DQ needs 21) is converted.
TORCHSCRIPT_MAX_OPSET = 20


def export_onnx(model: nn.Module, height: int, width: int, opset: int, metadata: dict[str, str]) -> bytes:
    """Trace `model(imgl, imgr) -> disparity` at 1x3xHxW, check it fully, return the ONNX bytes."""
    example = torch.zeros(1, 3, height, width)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (example, example), buf, input_names=list(INPUTS), output_names=[OUTPUT],
                          opset_version=min(opset, TORCHSCRIPT_MAX_OPSET), dynamo=False, do_constant_folding=True,
                          custom_opsets={INT16_DOMAIN: 1} if _has_int16(model) else None)
    proto = onnx.load_from_string(buf.getvalue())
    scalarize_qdq_params(proto)
    lower_int16(proto)
    if opset > TORCHSCRIPT_MAX_OPSET:
        proto = version_converter.convert_version(proto, opset)
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


def _has_int16(model: nn.Module) -> bool:
    return any(isinstance(m, ExportFakeQuant16) for m in model.modules())


def lower_int16(proto: onnx.ModelProto) -> None:
    """Each `stereokit::FakeQuant16` placeholder -> QuantizeLinear -> DequantizeLinear with a scalar
    float scale and an int16 zero point of 0 (symmetric), named after the placeholder."""
    nodes: list[onnx.NodeProto] = []
    for node in proto.graph.node:
        if node.domain != INT16_DOMAIN:
            nodes.append(node)
            continue
        scale = next(a.f for a in node.attribute if a.name == "scale")
        base = node.output[0]
        proto.graph.initializer.extend([helper.make_tensor(f"{base}_scale16", TensorProto.FLOAT, [], [scale]),
                                        helper.make_tensor(f"{base}_zero16", TensorProto.INT16, [], [0])])
        params = [f"{base}_scale16", f"{base}_zero16"]
        nodes.append(helper.make_node("QuantizeLinear", [node.input[0], *params], [f"{base}_q16"], name=f"{node.name}_Q16"))
        nodes.append(helper.make_node("DequantizeLinear", [f"{base}_q16", *params], [base], name=f"{node.name}_DQ16"))
    del proto.graph.node[:]
    proto.graph.node.extend(nodes)
    for entry in [o for o in proto.opset_import if o.domain == INT16_DOMAIN]:
        proto.opset_import.remove(entry)
    # shapes inferred by the exporter for the placeholders are unknown; onnx infers them again
    del proto.graph.value_info[:]


def output_quantization(proto: onnx.ModelProto) -> tuple[str, float] | None:
    """(type, scale) of the last DequantizeLinear before the output: the disparity's grid, normalised
    to [0, 1) (times maxdisp it is the step in pixels). None for a float model."""
    g = Graph.load(proto)
    name = proto.graph.output[0].name
    for _ in range(64):
        node = g.producer.get(name)
        if node is None:
            return None
        if node.op_type == "DequantizeLinear":
            scale = g.constant_value(node.input[1])
            return g.qdq_dtype(node), float(scale.reshape(-1)[0]) if scale is not None else float("nan")
        name = node.input[0]
    return None

"""Reading an ONNX graph: who produces and consumes each tensor, shapes, MACs and bytes per node."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import onnx
from onnx import numpy_helper

_ELEM_BYTES = {onnx.TensorProto.FLOAT: 4, onnx.TensorProto.UINT8: 1, onnx.TensorProto.INT8: 1,
               onnx.TensorProto.INT32: 4, onnx.TensorProto.INT64: 8, onnx.TensorProto.FLOAT16: 2,
               onnx.TensorProto.INT16: 2, onnx.TensorProto.UINT16: 2}

_DTYPE_NAMES = {onnx.TensorProto.UINT8: "uint8", onnx.TensorProto.INT8: "int8", onnx.TensorProto.INT16: "int16",
                onnx.TensorProto.UINT16: "uint16", onnx.TensorProto.INT32: "int32"}


@dataclass
class Graph:
    model: onnx.ModelProto
    producer: dict[str, onnx.NodeProto] = field(default_factory=dict)
    consumers: dict[str, list[onnx.NodeProto]] = field(default_factory=dict)
    shapes: dict[str, list[int | str]] = field(default_factory=dict)
    dtypes: dict[str, int] = field(default_factory=dict)
    constants: set[str] = field(default_factory=set)

    @classmethod
    def load(cls, model: onnx.ModelProto) -> "Graph":
        try:
            model = onnx.shape_inference.infer_shapes(model)
        except Exception:  # noqa: BLE001 - contrib ops (compiled graphs) are not all inferable
            pass
        g = cls(model)
        for node in model.graph.node:
            for out in node.output:
                g.producer[out] = node
            for name in node.input:
                g.consumers.setdefault(name, []).append(node)
            if node.op_type == "Constant":
                g.constants.update(node.output)
        for init in model.graph.initializer:
            g.constants.add(init.name)
            g.shapes[init.name] = list(init.dims)
            g.dtypes[init.name] = init.data_type
        for info in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
            t = info.type.tensor_type
            if t.HasField("shape"):
                g.shapes[info.name] = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim]
            g.dtypes[info.name] = t.elem_type
        return g

    def attr(self, node: onnx.NodeProto, name: str, default=None):  # type: ignore[no-untyped-def]
        for a in node.attribute:
            if a.name == name:
                return onnx.helper.get_attribute_value(a)
        return default

    def constant_value(self, name: str):  # type: ignore[no-untyped-def]
        for init in self.model.graph.initializer:
            if init.name == name:
                return numpy_helper.to_array(init)
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant":
            return numpy_helper.to_array(self.attr(node, "value"))
        if node is not None and node.op_type == "Identity":
            return self.constant_value(node.input[0])
        return None

    def qdq_dtype(self, node: onnx.NodeProto) -> str:
        """The integer type of a QuantizeLinear/DequantizeLinear: its zero point's (uint8 when absent)."""
        zero = node.input[2] if len(node.input) > 2 and node.input[2] else None
        if zero is None:
            return "uint8"
        elem = self.dtypes.get(zero)
        if elem is None and (value := self.constant_value(zero)) is not None:
            return str(value.dtype)
        return _DTYPE_NAMES.get(elem, "unknown") if elem is not None else "unknown"

    def numel(self, name: str) -> int:
        shape = self.shapes.get(name)
        if not shape or any(not isinstance(d, int) for d in shape):
            return 0
        return math.prod(shape)

    def bytes_of(self, name: str) -> int:
        return self.numel(name) * _ELEM_BYTES.get(self.dtypes.get(name, onnx.TensorProto.FLOAT), 4)


CONV_OPS = ("Conv", "QLinearConv", "ConvInteger")


def conv_weight_input(node: onnx.NodeProto) -> str:
    return node.input[3] if node.op_type == "QLinearConv" else node.input[1]


def node_macs(g: Graph, node: onnx.NodeProto) -> int:
    """Multiply-accumulates of a conv (output elements x C_in/groups x kernel volume); 0 otherwise."""
    if node.op_type not in CONV_OPS:
        return 0
    weight = g.shapes.get(conv_weight_input(node))
    if not weight and (value := g.constant_value(conv_weight_input(node))) is not None:
        weight = list(value.shape)
    if not weight and (dq := g.producer.get(conv_weight_input(node))) is not None and dq.op_type == "DequantizeLinear":
        weight = g.shapes.get(dq.input[0])
    if not weight:
        return 0
    return g.numel(node.output[0]) * math.prod(int(d) for d in weight[1:])


def node_bytes(g: Graph, node: onnx.NodeProto) -> int:
    """Bytes read and written by one node (inputs, weights and outputs at their stored types)."""
    return sum(g.bytes_of(n) for n in node.input if n) + sum(g.bytes_of(n) for n in node.output if n)

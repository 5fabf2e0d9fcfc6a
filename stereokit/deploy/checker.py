"""The model checker: for every node of the QDQ IR, the integer accelerator path or a CPU fallback,
and the rule that decided it; plus what would break compilation.

A node is on the integer path when its data inputs come from DequantizeLinear (through data-movement
ops) and its outputs go to QuantizeLinear, and the target profile lists its op with constraints
the node meets. Q/DQ nodes themselves are the boundary, not work, and are not reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import onnx

from stereokit.deploy.graph import CONV_OPS, Graph, node_macs
from stereokit.deploy.target import OpRule, TargetProfile

QDQ = ("QuantizeLinear", "DequantizeLinear")
# Identity only forwards its input: reported nowhere, looked through everywhere.
PASS_THROUGH = ("Identity",)
IGNORED = ("Constant",) + PASS_THROUGH
# Activations a runtime fuses into the op before them (Conv + Relu -> one QLinearConv).
FUSED_ACTIVATIONS = ("Relu",)
# Ops whose extra inputs are parameters (shapes, axes, sizes), not data.
PARAM_INPUTS = {"Slice": 1, "Reshape": 1, "Resize": 1, "Split": 1, "Squeeze": 1, "Unsqueeze": 1, "Clip": 1, "Pad": 1}


@dataclass
class NodeCheck:
    name: str
    op: str
    device: str  # "accelerator" | "cpu"
    rule: str
    macs: int = 0
    dtype: str = "float"  # the widest activation type around the node: uint8, int8, int16 or float


@dataclass
class CheckReport:
    target: str
    nodes: list[NodeCheck] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def macs(self) -> int:
        return sum(n.macs for n in self.nodes)

    @property
    def accelerator_macs(self) -> int:
        return sum(n.macs for n in self.nodes if n.device == "accelerator")

    @property
    def fallbacks(self) -> list[NodeCheck]:
        return [n for n in self.nodes if n.device == "cpu"]

    def by_op(self) -> dict[str, dict[str, int]]:
        table: dict[str, dict[str, int]] = {}
        for n in self.nodes:
            row = table.setdefault(n.op, {"accelerator": 0, "cpu": 0, "macs": 0})
            row[n.device] += 1
            row["macs"] += n.macs
        return table


def _data_inputs(node: onnx.NodeProto, g: Graph) -> list[str]:
    limit = PARAM_INPUTS.get(node.op_type)
    names = list(node.input[:limit]) if limit else list(node.input)
    return [n for n in names if n and n not in g.constants]


def _is_data_movement(node: onnx.NodeProto, target: TargetProfile) -> bool:
    rule = target.rule(node.op_type)
    return rule is not None and rule.data_movement


def _quantized_input(name: str, g: Graph, target: TargetProfile, depth: int = 0) -> bool:
    node = g.producer.get(name)
    if node is None or depth > 32:
        return False
    if node.op_type == "DequantizeLinear":
        return True
    if _is_data_movement(node, target) or node.op_type in PASS_THROUGH:
        return all(_quantized_input(i, g, target, depth + 1) for i in _data_inputs(node, g))
    return False


def _quantized_output(name: str, g: Graph, target: TargetProfile, depth: int = 0) -> bool:
    users = g.consumers.get(name, [])
    if not users or depth > 32:
        return False
    for user in users:
        if user.op_type == "QuantizeLinear":
            continue
        passes = _is_data_movement(user, target) or user.op_type in FUSED_ACTIVATIONS + PASS_THROUGH
        if passes and all(_quantized_output(o, g, target, depth + 1) for o in user.output):
            continue
        return False
    return True


_WIDTH = {"float": 0, "uint8": 1, "int8": 1, "int16": 2}


def _input_dtypes(name: str, g: Graph, target: TargetProfile, depth: int = 0) -> list[str]:
    """The Q/DQ types a data input was dequantized from (looking through data movement)."""
    node = g.producer.get(name)
    if node is None or depth > 32:
        return []
    if node.op_type == "DequantizeLinear":
        return [g.qdq_dtype(node)]
    if _is_data_movement(node, target) or node.op_type in PASS_THROUGH:
        return [t for i in _data_inputs(node, g) for t in _input_dtypes(i, g, target, depth + 1)]
    return []


def _output_dtypes(name: str, g: Graph, target: TargetProfile, depth: int = 0) -> list[str]:
    """The Q types an output is quantized to (looking through data movement and fused activations)."""
    found: list[str] = []
    if depth > 32:
        return found
    for user in g.consumers.get(name, []):
        if user.op_type == "QuantizeLinear":
            found.append(g.qdq_dtype(user))
        elif _is_data_movement(user, target) or user.op_type in FUSED_ACTIVATIONS + PASS_THROUGH:
            found += [t for o in user.output for t in _output_dtypes(o, g, target, depth + 1)]
    return found


def _widest(types: list[str]) -> str:
    return max(types, key=lambda t: _WIDTH.get(t, 0)) if types else "float"


def _dtype_failure(types: set[str], rule: OpRule, target: TargetProfile) -> str | None:
    allowed = [t for t in (rule.dtypes or target.activation_dtypes) if t in target.activation_dtypes]
    wrong = sorted(t for t in types if t not in allowed)
    if wrong:
        return f"{'/'.join(wrong)} activations: {rule.op} on {target.name} takes {', '.join(allowed) or 'none'}"
    return None


def _constraint_failure(node: onnx.NodeProto, g: Graph, rule: OpRule) -> str | None:
    shape = g.shapes.get(node.output[0]) or []
    if len(shape) > rule.max_rank:
        return f"rank {len(shape)} above {rule.max_rank}"
    kernel = g.attr(node, "kernel_shape")
    if rule.max_kernel is not None and kernel and max(kernel) > rule.max_kernel:
        return f"kernel {'x'.join(map(str, kernel))} above {rule.max_kernel}"
    strides = g.attr(node, "strides")
    if rule.strides is not None and strides and any(s not in rule.strides for s in strides):
        return f"stride {strides} not in {rule.strides}"
    dilations = g.attr(node, "dilations")
    if rule.dilations is not None and dilations and any(d not in rule.dilations for d in dilations):
        return f"dilation {dilations} not in {rule.dilations}"
    if rule.max_channels is not None and len(shape) >= 2 and isinstance(shape[1], int) and shape[1] > rule.max_channels:
        return f"{shape[1]} output channels above {rule.max_channels}"
    mode = g.attr(node, "mode")
    if rule.resize_modes is not None and node.op_type == "Resize":
        text = mode.decode() if isinstance(mode, bytes) else str(mode or "nearest")
        if text not in rule.resize_modes:
            return f"resize mode {text} not in {rule.resize_modes}"
    return None


def _describe(node: onnx.NodeProto, g: Graph) -> str:
    kernel = g.attr(node, "kernel_shape")
    strides = g.attr(node, "strides")
    parts = [node.op_type]
    if kernel:
        parts.append("x".join(map(str, kernel)))
    if strides and any(s != 1 for s in strides):
        parts.append(f"stride {max(strides)}")
    return " ".join(parts)


def check_model(model: onnx.ModelProto, target: TargetProfile, float_islands: list[str]) -> CheckReport:
    """`float_islands`: StereoNet module paths the precision map keeps in float; their ops may run on
    the CPU without being an error. Every node is reported with the widest activation type around
    it, and a type the profile's op (or the profile) does not take sends it to the CPU."""
    g = Graph.load(model)
    report = CheckReport(target=target.name)
    for value in list(model.graph.input) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if any(not d.HasField("dim_value") for d in dims):
            report.errors.append(f"'{value.name}' has a dynamic shape; compile needs static shapes (re-export).")
    island_marks = ["/" + path.replace(".", "/") + "/" for path in float_islands]
    quantized_graph = any(n.op_type in QDQ for n in model.graph.node)
    for node in model.graph.node:
        if node.op_type in QDQ:
            if len(node.input) < 2 or not node.input[1]:
                report.errors.append(f"{node.name or node.op_type}: {node.op_type} without a scale.")
            elif g.qdq_dtype(node) not in _WIDTH:
                report.errors.append(f"{node.name}: {node.op_type} of type {g.qdq_dtype(node)}, which stereokit does not compile.")
            continue
        if node.op_type in IGNORED:
            continue
        macs = node_macs(g, node)
        data_in = _data_inputs(node, g)
        rule = target.rule(node.op_type)
        quant_in = bool(data_in) and all(_quantized_input(i, g, target) for i in data_in)
        quant_out = all(_quantized_output(o, g, target) for o in node.output)
        activations = data_in[:1] if node.op_type in CONV_OPS else data_in  # not the weights' int8
        types = [t for i in activations for t in _input_dtypes(i, g, target)] + [t for o in node.output for t in _output_dtypes(o, g, target)]
        dtype = _widest(types)
        in_island = any(mark in node.name for mark in island_marks)
        producer = g.producer.get(data_in[0]) if data_in else None
        if (quantized_graph and node.op_type in FUSED_ACTIVATIONS and producer is not None and quant_out
                and all(_quantized_input(i, g, target) for i in _data_inputs(producer, g))):
            prod_rule = target.rule(producer.op_type)
            failure = _dtype_failure(set(types), prod_rule, target) if prod_rule is not None else None
            device, why = ("cpu", failure) if failure else ("accelerator", f"fused into the {producer.op_type} before it")
            report.nodes.append(NodeCheck(node.name or node.op_type, node.op_type, device, why, 0, dtype))
            continue
        if not quantized_graph:
            device, why = "cpu", "float model: no QuantizeLinear/DequantizeLinear in the graph"
        elif rule is not None and rule.data_movement:
            if quant_in:
                failure = _dtype_failure(set(types), rule, target)
                device, why = ("cpu", failure) if failure else ("accelerator", f"moves {dtype} data")
            else:
                device, why = "cpu", "moves float data (post-process)" if not _feeds_quantized(node, g) else "moves float data"
        elif not (quant_in and quant_out):
            device = "cpu"
            what = "input" if not quant_in else "output"
            if in_island:
                why = f"float {what}: a float island named in quant.float_modules"
            elif node.op_type in target.allowed_float_ops and not quant_out and not _feeds_quantized(node, g):
                why = f"float {what}: post-process op allowed on the CPU"
            else:
                why = f"float {what} between quantized ops"
                report.errors.append(f"{node.name}: {node.op_type} runs in float between quantized ops and is not an allowed float op.")
        elif rule is None:
            device, why = "cpu", f"{node.op_type} is not an accelerator op of {target.name}"
        elif (failure := _dtype_failure(set(types), rule, target) or _constraint_failure(node, g, rule)) is not None:
            device, why = "cpu", failure
        else:
            device, why = "accelerator", f"{dtype} {_describe(node, g)}"
        runs_quantized = quant_in and (quant_out or (rule is not None and rule.data_movement))
        report.nodes.append(NodeCheck(node.name or node.op_type, node.op_type, device, why, macs, dtype if runs_quantized else "float"))
    return report


def _feeds_quantized(node: onnx.NodeProto, g: Graph) -> bool:
    """True when a float op's result later enters a QuantizeLinear (it sits inside the integer graph)."""
    seen: set[str] = set()
    todo = list(node.output)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for user in g.consumers.get(name, []):
            if user.op_type == "QuantizeLinear":
                return True
            todo.extend(user.output)
    return False

"""Spike: our StereoNet through torchao's pt2e QAT flow, measured (the port plan in docs/quantization.md).

Not part of stereokit (torchao and onnxscript are not its dependencies). Run by hand in a venv that
has them beside the project:

    python -m venv /tmp/pt2e && . /tmp/pt2e/bin/activate
    pip install torch==2.13.0 torchao onnxscript && pip install -e .
    python benchmarks/spike_pt2e.py

What it measures, on the demo-sized model at 128x256 (questions the port plan must answer):
1. torch.export of the float model for training: does it trace, how long;
2. prepare_qat_pt2e with a small quantizer of our own that states our contract (uint8 activations,
   int8 per-channel weights, int16 for the softmax and the regression): which Conv-BN pairs pt2e
   folds for QAT (2-D and 3-D counted apart), how many fake-quants sit where;
3. a QAT step (forward + backward) against our eager QAT model's step;
4. convert_pt2e: the Q/DQ ops by dtype, and the converted model against the fake-quant model;
5. QDQ ONNX through torch.onnx (dynamo): does it export, at what opset, with which Q/DQ dtypes,
   does ONNX Runtime load it and agree with the converted model.
Prints one JSON object.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.fx import Node

from stereokit.config import load_config
from stereokit.models import build_stereonet, multiscale_loss
from stereokit.quant.prepare import prepare_quant_model
from stereokit.services.demo import SMALL_MODEL


def _spec(dtype: torch.dtype, qmin: int, qmax: int, qscheme: torch.qscheme, ch_axis: int | None = None) -> Any:
    from torchao.quantization.pt2e import FusedMovingAvgObsFakeQuantize, MovingAverageMinMaxObserver, MovingAveragePerChannelMinMaxObserver
    from torchao.quantization.pt2e.quantizer import QuantizationSpec

    observer = MovingAveragePerChannelMinMaxObserver if ch_axis is not None else MovingAverageMinMaxObserver
    return QuantizationSpec(dtype=dtype, quant_min=qmin, quant_max=qmax, qscheme=qscheme, ch_axis=ch_axis, is_dynamic=False,
                            observer_or_fake_quant_ctr=FusedMovingAvgObsFakeQuantize.with_args(observer=observer))


def stereokit_quantizer() -> Any:
    """Our contract as pt2e annotations: every conv's input uint8 and weight int8 per channel;
    add/mul/cat/resize/pool outputs uint8; the softmax and the regression conv int16."""
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation, Quantizer

    act8 = _spec(torch.uint8, 0, 255, torch.per_tensor_affine)
    act16 = _spec(torch.int16, -32768, 32767, torch.per_tensor_symmetric)
    weight = _spec(torch.int8, -127, 127, torch.per_channel_symmetric, ch_axis=0)
    aten = torch.ops.aten
    convs = {aten.conv2d.default, aten.conv3d.default}
    outputs8 = {aten.add.Tensor, aten.mul.Tensor, aten.cat.default, aten.upsample_bilinear2d.vec, aten.avg_pool2d.default,
                aten.relu.default}

    class StereoQuantizer(Quantizer):
        def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
            for node in model.graph.nodes:
                if node.op != "call_function":
                    continue
                if node.target in convs:
                    x, w = node.args[0], node.args[1]
                    regression = isinstance(x, Node) and x.target == aten.softmax.int
                    node.meta["quantization_annotation"] = QuantizationAnnotation(
                        input_qspec_map={x: act16 if regression else act8, w: weight},
                        output_qspec=act16 if regression else None, _annotated=True)
                elif node.target == aten.softmax.int:
                    node.meta["quantization_annotation"] = QuantizationAnnotation(output_qspec=act16, _annotated=True)
                elif node.target in outputs8:
                    node.meta["quantization_annotation"] = QuantizationAnnotation(output_qspec=act8, _annotated=True)
            return model

        def validate(self, model: torch.fx.GraphModule) -> None:
            pass

    return StereoQuantizer()


def _ops(gm: torch.fx.GraphModule) -> Counter:
    return Counter(str(n.target) for n in gm.graph.nodes if n.op == "call_function")


def _step_seconds(net: nn.Module, cfg: Any, x: torch.Tensor, gt: torch.Tensor, steps: int = 3) -> float:
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        loss = multiscale_loss([o.float() for o in net(x, x)], gt, cfg.model.maxdisp, cfg.model.loss_weights)
        loss.backward()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def main() -> None:
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_qat_pt2e

    report: dict[str, Any] = {"torch": torch.__version__}
    import torchao

    report["torchao"] = torchao.__version__
    cfg = load_config(None, SMALL_MODEL)
    torch.manual_seed(0)
    model = build_stereonet(cfg.model).train()
    x = torch.rand(2, 3, 128, 256)
    gt = torch.rand(2, 1, 128, 256) * cfg.model.maxdisp * 0.5

    start = time.perf_counter()
    exported = torch.export.export(model, (x, x)).module()
    report["export_s"] = round(time.perf_counter() - start, 2)
    ops = _ops(exported)
    report["float_graph"] = {"conv2d": ops["aten.conv2d.default"], "conv3d": ops["aten.conv3d.default"],
                             "batch_norm": sum(v for k, v in ops.items() if "batch_norm" in k)}

    start = time.perf_counter()
    prepared = prepare_qat_pt2e(exported, stereokit_quantizer())
    report["prepare_s"] = round(time.perf_counter() - start, 2)
    # After prepare, a Conv-BN pair pt2e folds for QAT has its BN rewritten into the conv's weight
    # scaling; a pair it does not fold keeps a batch_norm node right after the conv.
    folded = Counter()
    for node in prepared.graph.nodes:
        if node.op == "call_function" and node.target in (torch.ops.aten.conv2d.default, torch.ops.aten.conv3d.default):
            users = [u for u in node.users if "batch_norm" in str(u.target)]
            folded[("3d" if "conv3d" in str(node.target) else "2d") + ("_bn_kept" if users else "_no_bn_after")] += 1
    report["qat_conv_bn"] = dict(folded)
    report["fake_quants"] = sum(1 for m in prepared.modules() if "FakeQuantize" in type(m).__name__)

    report["step_s_pt2e"] = round(_step_seconds(prepared, cfg, x, gt), 3)
    # like for like: moving-average min-max observers in both (stereokit's default QAT keeps the
    # calibration's percentile observers, which sort each activation)
    minmax = load_config(None, SMALL_MODEL + ["train.calibration.observer=minmax"])
    eager = prepare_quant_model(model, minmax).train()
    report["step_s_eager_minmax"] = round(_step_seconds(eager, cfg, x, gt), 3)
    report["step_s_eager_percentile"] = round(_step_seconds(prepare_quant_model(model, cfg).train(), cfg, x, gt), 3)

    from torchao.quantization.pt2e import move_exported_model_to_eval

    move_exported_model_to_eval(prepared)
    with torch.no_grad():
        fake = prepared(x, x)[-1]
    converted = convert_pt2e(prepared)
    qdq = Counter()
    for node in converted.graph.nodes:
        if node.op == "call_function" and "quantize_per" in str(node.target):
            dtype = node.args[-1] if isinstance(node.args[-1], torch.dtype) else node.kwargs.get("dtype")
            qdq[f"{str(node.target).split('.')[1]}:{dtype}"] += 1
    report["converted_qdq"] = dict(qdq)
    with torch.no_grad():
        integer = converted(x, x)[-1]
    report["converted_vs_fake_mean_px"] = float((integer - fake).abs().mean() * cfg.model.maxdisp)

    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "pt2e.onnx"
            torch.onnx.export(converted, (x, x), str(path), dynamo=True, opset_version=21)
            import onnx
            import onnxruntime as ort

            proto = onnx.load(str(path))
            report["onnx_opset"] = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
            kinds = Counter()
            inits = {i.name: i for i in proto.graph.initializer}
            for node in proto.graph.node:
                if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
                    zp = inits.get(node.input[2]) if len(node.input) > 2 else None
                    kinds[f"{node.op_type}:{onnx.TensorProto.DataType.Name(zp.data_type) if zp is not None else '?'}"] += 1
            report["onnx_qdq"] = dict(kinds)
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            feeds = {i.name: x.numpy() for i in session.get_inputs()}
            out = session.run(None, feeds)[-1]
            report["ort_vs_converted_mean_px"] = float(abs(torch.from_numpy(out) - integer).mean() * cfg.model.maxdisp)
    except Exception as exc:  # the spike reports what failed instead of stopping
        report["onnx_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
        report["onnx_traceback_tail"] = traceback.format_exc().splitlines()[-3:]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

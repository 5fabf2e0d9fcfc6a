"""Where OpenVINO's run of the QDQ IR leaves ONNX's reference arithmetic, tensor by tensor.

Run by hand on a run with an export (the demo's, for instance):
    python benchmarks/probe_openvino.py runs/demo/run [--index 0]
Every quantized tensor of RUN/export/model.onnx (each DequantizeLinear fed by a QuantizeLinear)
becomes a graph output; ONNX Runtime with its graph optimizations off (Q and DQ computed as the
ONNX spec writes them) and OpenVINO (f32, as stereokit runs it) compute one test pair. Prints, in
graph order, how many values of each tensor differ by more than half a quantization step (a flipped
rounding) and the largest difference in steps, then the final disparity's mean |diff| in px.
Extra outputs keep OpenVINO from fusing some nodes, so the final figure is for this probed graph.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import onnx
import openvino as ov
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from stereokit.data.dataset import SceneFlowLMDB
from stereokit.data.transforms import preprocess_image
from stereokit.deploy import openvino_runtime
from stereokit.runs import run_config


def quantized_tensors(model: onnx.ModelProto) -> list[tuple[str, float]]:
    """(DequantizeLinear output, its scale) for every tensor that went through a QuantizeLinear, in graph order."""
    quantized = {n.output[0] for n in model.graph.node if n.op_type == "QuantizeLinear"}
    scales = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    found = []
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in quantized and node.input[1] in scales:
            scale = scales[node.input[1]].reshape(-1)
            if scale.size == 1:  # activations (weights are per channel and exact in both)
                found.append((node.output[0], float(scale[0])))
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run", type=Path)
    parser.add_argument("--index", type=int, default=0, help="the test pair")
    args = parser.parse_args()
    cfg = run_config(args.run)
    model = onnx.load(str(args.run / "export" / "model.onnx"))
    probes = quantized_tensors(model)
    final = model.graph.output[0].name
    model.graph.output.extend(helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name, _ in probes)
    data = model.SerializeToString()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "probed.onnx").write_bytes(data)
        compiled = ov.Core().compile_model(ov.convert_model(str(Path(tmp) / "probed.onnx")), "CPU", openvino_runtime.CONFIG)
    h, w = (d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim[2:])
    sample = SceneFlowLMDB(cfg.data.test_lmdb).raw(args.index)
    feed = {k: preprocess_image(np.ascontiguousarray(sample[k][:h, :w]), cfg.data).numpy() for k in ("imgl", "imgr")}
    reference = dict(zip([o.name for o in session.get_outputs()], session.run(None, feed)))
    got = {name: np.asarray(value) for port, value in compiled.create_infer_request().infer(feed).items() for name in port.get_names()}
    print(f"| tensor | step | values flipped (> 0.5 step) | max (steps) |  ({args.run}, test pair {args.index})")
    print("|---|---|---|---|")
    for name, scale in probes:
        diff = np.abs(reference[name] - got[name]) / scale
        print(f"| {name.removeprefix('/model/model/')} | {scale:.3g} | {(diff > 0.5).mean():.3%} | {diff.max():.1f} |")
    print(f"final disparity: mean |diff| {np.abs(reference[final] - got[final]).mean():.4f} px")


if __name__ == "__main__":
    main()

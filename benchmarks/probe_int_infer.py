"""Where ONNX Runtime's integer run of the IR leaves the torch fixed-point model (int_infer), tensor by tensor.

Run by hand on a run with an export and a QAT stage (the demo's, for instance):
    python benchmarks/probe_int_infer.py runs/demo/run [--index 15]
Every activation quantizer of RUN/export/model.onnx becomes a graph output of ONNX Runtime's optimized
(QLinear) session; forward hooks take the same tensors from int_infer. Prints, in graph order, the
share of values whose integer differs and the largest difference in steps. Names that int_infer
does not hold as one module (concatenations inside the cost volume, the float simulation's own
quantizers) are skipped. Then the final disparity's mean |diff| in px over the whole test split.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import numpy_helper

from stereokit.data.dataset import build_dataset
from stereokit.engine.evaluate import torch_predictor
from stereokit.runs import run_config
from stereokit.services.stages import load_stage_model, source_checkpoint


def module_name(node_name: str) -> str:
    """'/model/model/neck/stem/stem.0/stem.0.0/activation_post_process/QuantizeLinear' -> 'model.neck.stem.0.0'."""
    parts = [p for p in node_name.split("/activation_post_process")[0].split("/") if p]
    kept = [p for i, p in enumerate(parts) if not (i + 1 < len(parts) and parts[i + 1].startswith(p + "."))]
    return ".".join(kept).removeprefix("model.")


def constants(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    values = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    values.update({n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in model.graph.node if n.op_type == "Constant"})
    for node in model.graph.node:  # the exporter passes some quantization parameters through Identity nodes
        if node.op_type == "Identity" and node.input[0] in values:
            values[node.output[0]] = values[node.input[0]]
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--index", type=int, default=0, help="the test pair probed tensor by tensor")
    args = parser.parse_args()
    cfg = run_config(args.run)
    int_model = load_stage_model(cfg, "int_infer", source_checkpoint(args.run, "int_infer"))
    captured: dict[str, torch.Tensor] = {}

    def keep(name: str):  # the first call's output (the image pool runs twice); returns None, so the output stands
        def hook(module: torch.nn.Module, inputs: object, out: object) -> None:
            if isinstance(out, torch.Tensor):
                captured.setdefault(name, out)
        return hook

    for name, module in int_model.named_modules():
        module.register_forward_hook(keep(name))
    test = build_dataset(cfg, "test", train=False)
    pair = test[args.index]
    with torch.no_grad():
        int_model(pair["imgl"][None], pair["imgr"][None])

    ir = onnx.load(str(args.run / "export" / "model.onnx"))
    consts = constants(ir)
    probes = {n.output[0]: n for n in ir.graph.node if n.op_type == "QuantizeLinear" and "/activation_post_process/" in n.name}
    ir.graph.output.extend(onnx.helper.make_empty_tensor_value_info(o) for o in probes)
    session = ort.InferenceSession(ir.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    outputs = dict(zip(names, session.run(None, {"imgl": pair["imgl"][None].numpy(), "imgr": pair["imgr"][None].numpy()})))
    plain = {name.replace(".inner", ""): name for name in captured}  # a simulated module holds the original as .inner
    print(f"{'tensor':58s} {'differ':>8s} {'max steps':>9s}")
    for output, node in probes.items():
        name = module_name(node.name)
        ours, theirs = captured.get(plain.get(name, name)), outputs[output].astype(np.int64)
        if ours is None or tuple(ours.shape) != theirs.shape:
            continue
        if ours.is_quantized:
            values = ours.int_repr().numpy().astype(np.int64)
        else:  # a simulated block's output: float on the quantizer's grid
            scale, zero_point = consts[node.input[1]], consts[node.input[2]] if len(node.input) > 2 else 0
            values = np.rint(ours.numpy() / float(np.reshape(scale, -1)[0]) + int(np.reshape(zero_point, -1)[0])).astype(np.int64)
        diff = np.abs(values - theirs)
        print(f"{name:58s} {np.mean(diff > 0):8.2%} {int(diff.max()):9d}")

    compiled = ort.InferenceSession(str(args.run / "export" / "model.onnx"), providers=["CPUExecutionProvider"])
    reference = torch_predictor(int_model, cfg.model.maxdisp)
    diffs = []
    with torch.no_grad():
        for i in range(len(test)):
            item = test[i]
            ref = reference(item["imgl"][None], item["imgr"][None]).numpy()
            out = compiled.run(None, {"imgl": item["imgl"][None].numpy(), "imgr": item["imgr"][None].numpy()})[0]
            diffs.append(np.abs(out - ref).ravel())
    d = np.concatenate(diffs)
    print(f"disparity over {len(test)} test pairs: mean |diff| {d.mean():.4f} px, {np.mean(d > 0.5):.2%} over 0.5 px, max {d.max():.2f} px")


if __name__ == "__main__":
    main()

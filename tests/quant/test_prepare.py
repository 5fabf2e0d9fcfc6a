from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.ao.nn.quantized
import torch.ao.nn.intrinsic.qat as nniqat
import torch.ao.nn.qat as nnqat
from torch import nn
from torch.ao.quantization import FakeQuantize

import re

import pytest

from stereokit.config import StereokitConfig
from stereokit.deploy.graph import Graph
from stereokit.errors import StereokitError
from stereokit.models.postprocess import DeployModel
from stereokit.quant.convert import RuntimeAddFunctional, Simulated, to_int_model
from stereokit.models import build_stereonet
from stereokit.deploy.onnx_export import export_onnx
from stereokit.quant.fold import export_copy
from stereokit.quant.observers import PercentileObserver
from stereokit.quant.prepare import activation_fake_quants, prepare_quant_model, quantized_layers, set_fake_quant, set_observers


def _calibrated(cfg: StereokitConfig, trained_bn: bool = False) -> tuple[nn.Module, nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    float_model = build_stereonet(cfg.model).eval()
    if trained_bn:  # BN statistics and shifts as training leaves them: the folded convs get biases
        for bn in (m for m in float_model.modules() if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d))):
            bn.running_mean.normal_(0, 0.1)
            bn.bias.data.normal_(0, 0.1)
    model = prepare_quant_model(float_model, cfg).eval()
    x = torch.randn(2, 3, 64, 128)
    set_fake_quant(model, False)
    with torch.no_grad():
        model(x, x.roll(3, dims=-1))
    set_observers(model, False, weights_too=True)
    set_fake_quant(model, True)
    return float_model, model, x


def test_every_conv_has_int8_weights_and_quantized_input_and_output(small_cfg: StereokitConfig) -> None:
    _, model, _ = _calibrated(small_cfg)
    convs = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d))]
    assert len(convs) == len(quantized_layers(model)) > 40
    for conv in convs:
        assert isinstance(conv, (nniqat.ConvBn2d, nniqat.ConvBnReLU2d, nniqat.ConvBn3d, nniqat.ConvBnReLU3d, nnqat.Conv2d, nnqat.Conv3d))
        wfq = conv.weight_fake_quant
        assert (wfq.quant_min, wfq.quant_max, wfq.dtype, wfq.qscheme) == (-128, 127, torch.qint8, torch.per_channel_symmetric)
        assert wfq.scale.numel() == conv.out_channels
        assert isinstance(conv.activation_post_process, FakeQuantize)  # the output is quantized
    # every input of a conv is the output of a quantizer: in the integer model, no float conv is left
    int_model = to_int_model(model)
    float_convs = [n for n, m in int_model.named_modules() if type(m) in (nn.Conv2d, nn.Conv3d)]
    assert float_convs == []
    # torch has no int16 kernels: the soft-argmin and the refinement's 16-bit ends (and the conv that
    # reads the 16-bit concatenation) stay their fake-quant simulation; the refinement's residual blocks are integer
    level = int_model.model.head.refine[0]
    assert type(int_model.model.head.soft_argmin) is Simulated
    assert {name for name, child in level.named_children() if type(child) is Simulated} == {"upsample", "cat", "conv_in", "residual", "add"}
    assert isinstance(level.blocks[0].conv1[0], torch.ao.nn.intrinsic.quantized.ConvReLU2d)
    assert type(level.blocks[0].add) is RuntimeAddFunctional
    assert isinstance(int_model.model.head.aggregation.out, torch.ao.nn.quantized.Conv3d)


def test_fake_quant_and_integer_models_agree(small_cfg: StereokitConfig) -> None:
    float_model, model, x = _calibrated(small_cfg)
    with torch.no_grad():
        fq = model(x, x.roll(3, dims=-1))[-1]
        integer = to_int_model(model)(x, x.roll(3, dims=-1))[-1]
        fl = float_model(x, x.roll(3, dims=-1))[-1]
    step = 1.0 / 255  # the output's normalised range is [0, 1)
    assert (fq - integer).abs().max() <= 4 * step
    assert (fq - fl).abs().mean() < 0.05


def test_integer_conv_biases_sit_on_the_int32_accumulator_grid(small_cfg: StereokitConfig) -> None:
    """As QLinearConv (and the board) add them: int32 at input scale x weight scale."""
    _, model, x = _calibrated(small_cfg, trained_bn=True)
    int_model = to_int_model(model)
    convs = [m for m in int_model.modules() if isinstance(m, (torch.ao.nn.quantized.Conv2d, torch.ao.nn.quantized.Conv3d))]
    scales: dict[int, float] = {}
    hooks = [m.register_forward_pre_hook(lambda mod, i: scales.__setitem__(id(mod), i[0].q_scale()) or None) for m in convs]
    with torch.no_grad():
        int_model(x, x.roll(3, dims=-1))
    for hook in hooks:
        hook.remove()
    checked = 0
    for conv in convs:
        weight, bias = conv.weight(), conv.bias()
        if bias is None or bias.abs().max() == 0:
            continue
        steps = bias / (weight.q_per_channel_scales().float() * scales[id(conv)])
        assert torch.allclose(steps, steps.round(), atol=1e-3), conv
        checked += 1
    assert checked >= 10


def test_the_fake_quant_model_exports_to_onnx_qdq(small_cfg: StereokitConfig, tmp_path) -> None:
    _, model, x = _calibrated(small_cfg)
    path = tmp_path / "fq.onnx"

    class Final(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return self.inner(a, b)[-1]

    folded = Final(export_copy(model))
    path.write_bytes(export_onnx(folded, 64, 128, 21, {"test": "1"}))
    graph = onnx.load(str(path))
    ops = {n.op_type for n in graph.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    assert "BatchNormalization" not in ops  # folded before export
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"imgl": x[:1].numpy(), "imgr": x[:1].numpy()})
    with torch.no_grad():
        want = Final(model)(x[:1], x[:1]).numpy()
        folded_out = folded(x[:1], x[:1]).numpy()
    assert np.abs(got - folded_out).max() < 2 / 255
    # folding changes the result by at most a few 8-bit steps
    assert np.abs(folded_out - want).max() < 4 / 255


def test_percentile_observer_ignores_outliers() -> None:
    obs = PercentileObserver(percentile=99.0)
    x = torch.linspace(0, 1, 10001)
    x[-1] = 1000.0
    obs(x)
    assert float(obs.max_val) < 1.01 and float(obs.min_val) < 0.02
    obs(x * 2)
    assert 1.4 < float(obs.max_val) < 1.6  # the running mean of two batches


def test_activation_quantizers_cover_the_cost_volume_and_soft_argmin(small_cfg: StereokitConfig) -> None:
    _, model, _ = _calibrated(small_cfg)
    names = {n for n, _ in activation_fake_quants(model)}
    for needle in ("head.cost_volume.mul", "head.cost_volume.cat_volume", "head.soft_argmin.softmax",
                   "head.soft_argmin.regression", "head.refine.3.add", "neck.stage1.0.add", "quant"):
        assert any(needle in n for n in names), needle


def _int16_quantizers(model: nn.Module) -> set[str]:
    return {n.removesuffix(".activation_post_process") for n, fq in activation_fake_quants(model) if fq.quant_max - fq.quant_min > 255}


def test_the_precision_map_puts_int16_exactly_where_the_reference_does(small_cfg: StereokitConfig) -> None:
    _, model, _ = _calibrated(small_cfg)
    bits16 = _int16_quantizers(model)
    levels = range(small_cfg.model.refine_levels)
    want = {"model.head.soft_argmin.softmax", "model.head.soft_argmin.regression"}
    for i in levels:
        want |= {f"model.head.refine.{i}.upsample.quant", f"model.head.refine.{i}.cat", f"model.head.refine.{i}.residual", f"model.head.refine.{i}.add"}
    assert bits16 == want  # the refinement features (conv_in, blocks) stay 8-bit
    softmax = model.model.head.soft_argmin.softmax.activation_post_process
    assert float(softmax.scale) == 1.0 / 32768
    all8 = small_cfg.model_copy(update={"quant": small_cfg.quant.model_copy(update={"int16_modules": []})})
    assert _int16_quantizers(prepare_quant_model(build_stereonet(all8.model), all8)) == set()


def test_a_precision_map_naming_no_module_or_one_off_the_disparity_path_is_one_sentence(small_cfg: StereokitConfig) -> None:
    float_model = build_stereonet(small_cfg.model)
    for modules, message in ((["head.refine.*.nothing"], "'head.refine.*.nothing' names no module of the model"),
                             (["neck.stage1"], "'neck.stage1' is off the disparity path")):
        cfg = small_cfg.model_copy(update={"quant": small_cfg.quant.model_copy(update={"int16_modules": modules})})
        with pytest.raises(StereokitError, match=re.escape(message)):
            prepare_quant_model(float_model, cfg)


def test_the_ir_has_int16_qdq_around_the_map_and_no_float_compute_elsewhere(small_cfg: StereokitConfig) -> None:
    cfg = small_cfg.model_copy(update={"model": small_cfg.model.model_copy(update={"maxdisp": 192})})
    _, model, _ = _calibrated(cfg)
    proto = onnx.load_from_string(export_onnx(DeployModel(export_copy(model)), 64, 128, 21, {}))
    assert proto.opset_import[0].version == 21
    g = Graph.load(proto)
    int16_q = [n for n in proto.graph.node if n.op_type == "QuantizeLinear" and g.qdq_dtype(n) == "int16"]
    assert len(int16_q) == len(_int16_quantizers(model))
    for q in int16_q:  # each int16 quantizer sits behind an op of a 16-bit module
        producer = g.producer[q.input[0]]
        assert re.search(r"/head/(soft_argmin|refine\.\d+)/", producer.name) and "/blocks/" not in producer.name, producer.name
        assert producer.op_type in ("Softmax", "Conv", "Resize", "Concat", "Relu"), producer.name
    def source(name: str) -> str:  # looking through data movement
        node = g.producer[name]
        return source(node.input[0]) if node.op_type in ("Slice", "Split", "Squeeze", "Unsqueeze", "Reshape", "Identity") else node.op_type

    for node in proto.graph.node:
        if node.op_type in ("Conv", "Softmax", "Mul") and node.name.startswith("/model/"):
            assert source(node.input[0]) == "DequantizeLinear", f"{node.name} computes on float"
    # the final disparity: the last quantizer before the output is int16, its step at maxdisp 192 under 0.01 px
    last = [n for n in proto.graph.node if n.op_type == "QuantizeLinear"][-1]
    step_px = float(g.constant_value(last.input[1])) * 192
    assert g.qdq_dtype(last) == "int16" and step_px < 0.01



def test_torch_ao_is_used_only_inside_stereokit_quant() -> None:
    """torch.ao.quantization is deprecated upstream: one package to port (docs/quantization.md)."""
    import ast
    from pathlib import Path

    import stereokit

    package = Path(stereokit.__file__).parent
    offenders = []
    for path in package.rglob("*.py"):
        if path.parent.name == "quant" and path.parent.parent == package:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.relative_to(package)}: {n}" for n in names if n.startswith(("torch.ao", "torch.quantization"))]
    assert offenders == []


def test_the_float_model_holds_no_quantization_modules_and_prepare_swaps_them_in(small_cfg: StereokitConfig) -> None:
    model = build_stereonet(small_cfg.model)
    assert not [n for n, m in model.named_modules() if type(m).__module__.startswith("torch.ao")]
    prepared = prepare_quant_model(model, small_cfg)
    assert isinstance(prepared.model.head.refine[0].add, torch.ao.nn.quantized.FloatFunctional)
    assert isinstance(prepared.model.head.refine[0].upsample.quant.activation_post_process, FakeQuantize)
    assert not [n for n, m in model.named_modules() if type(m).__module__.startswith("torch.ao")]  # a copy was prepared


@pytest.mark.skipif("fbgemm" not in torch.backends.quantized.supported_engines, reason="fbgemm is an x86 engine")
def test_the_integer_model_runs_on_fbgemm_whatever_engine_was_set(small_cfg: StereokitConfig) -> None:
    """torch's default "x86" engine picks oneDNN kernels on VNNI/AMX CPUs, which round apart from ONNX Runtime."""
    _, model, x = _calibrated(small_cfg)
    torch.backends.quantized.engine = "x86"
    int_model = to_int_model(model)
    assert torch.backends.quantized.engine == "fbgemm"  # weights are packed for, and run on, fbgemm
    with torch.no_grad():
        first = int_model(x, x.roll(3, dims=-1))[-1]
        torch.backends.quantized.engine = "x86"  # a later change of the global engine does not move it
        assert torch.equal(int_model(x, x.roll(3, dims=-1))[-1], first)

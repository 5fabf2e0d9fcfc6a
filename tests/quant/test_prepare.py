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

from stereokit.config import StereokitConfig
from stereokit.models import build_stereonet
from stereokit.quant.convert import to_int_model
from stereokit.deploy.onnx_export import export_onnx
from stereokit.quant.fold import export_copy
from stereokit.quant.observers import PercentileObserver
from stereokit.quant.prepare import activation_fake_quants, prepare_quant_model, quantized_layers, set_fake_quant, set_observers


def _calibrated(cfg: StereokitConfig) -> tuple[nn.Module, nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    float_model = build_stereonet(cfg.model).eval()
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
    assert isinstance(int_model.model.head.soft_argmin.requant, torch.ao.nn.quantized.Quantize)  # the 16-bit island hands back 8 bits


def test_fake_quant_and_integer_models_agree(small_cfg: StereokitConfig) -> None:
    float_model, model, x = _calibrated(small_cfg)
    with torch.no_grad():
        fq = model(x, x.roll(3, dims=-1))[-1]
        integer = to_int_model(model)(x, x.roll(3, dims=-1))[-1]
        fl = float_model(x, x.roll(3, dims=-1))[-1]
    step = 1.0 / 255  # the output's normalised range is [0, 1)
    assert (fq - integer).abs().max() <= 4 * step
    assert (fq - fl).abs().mean() < 0.05


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
    path.write_bytes(export_onnx(folded, 64, 128, 17, {"test": "1"}))
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
    # folding and dropping the 16-bit simulation change the result by at most a few 8-bit steps
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
    for needle in ("head.cost_volume.mul", "head.cost_volume.cat_volume", "head.soft_argmin.inner.softmax",
                   "head.soft_argmin.inner.regression", "head.soft_argmin.requant", "head.refine.3.add", "neck.stage1.0.add", "quant"):
        assert any(needle in n for n in names), needle

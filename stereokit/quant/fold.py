"""Fold and freeze: the fake-quant model as the exported IR sees it.

Each fused QAT conv-BN becomes a plain conv whose weight is the BN-scaled weight and whose bias is
the BN shift; its weight fake-quant (whose scale was learned on exactly that scaled weight) and
its output fake-quant are kept, so the folded model computes what the eval-mode QAT model computes.
"""

from __future__ import annotations

import copy

import torch
import torch.ao.nn.intrinsic.qat as nniqat
import torch.nn.functional as F
from torch import Tensor, nn
from torch.ao.quantization import FakeQuantize

from stereokit.quant.prepare import is_16bit, set_observers

_FUSED = (nniqat.ConvBn2d, nniqat.ConvBnReLU2d, nniqat.ConvBn3d, nniqat.ConvBnReLU3d)


class FoldedConv(nn.Module):
    """conv(x, fq_w(W * s)) + (beta - mean * s) [then ReLU], s = gamma / sqrt(var + eps)."""

    def __init__(self, fused: nn.Module) -> None:
        super().__init__()
        bn = fused.bn
        s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        shape = [-1] + [1] * (fused.weight.dim() - 1)
        self.weight = nn.Parameter((fused.weight * s.reshape(shape)).detach().clone(), requires_grad=False)
        conv_bias = fused.bias if fused.bias is not None else torch.zeros_like(bn.running_mean)
        self.bias = nn.Parameter(((conv_bias - bn.running_mean) * s + bn.bias).detach().clone(), requires_grad=False)
        self.weight_fake_quant = fused.weight_fake_quant
        self.activation_post_process = fused.activation_post_process
        self.relu = isinstance(fused, (nniqat.ConvBnReLU2d, nniqat.ConvBnReLU3d))
        self.dims = fused.weight.dim() - 2
        self.stride, self.padding, self.dilation, self.groups = fused.stride, fused.padding, fused.dilation, fused.groups

    def forward(self, x: Tensor) -> Tensor:
        conv = F.conv2d if self.dims == 2 else F.conv3d
        y = conv(x, self.weight_fake_quant(self.weight), self.bias, self.stride, self.padding, self.dilation, self.groups)
        return self.activation_post_process(F.relu(y) if self.relu else y)


def fold_bn(model: nn.Module) -> nn.Module:
    """Replace every fused QAT conv-BN in place by its FoldedConv."""
    for name, child in list(model.named_children()):
        if isinstance(child, _FUSED):
            # the output fake-quant was called by a forward hook; FoldedConv calls it itself
            child._forward_hooks.clear()
            setattr(model, name, FoldedConv(child))
        else:
            fold_bn(child)
    return model


class FakeQuant16(torch.autograd.Function):
    """Symmetric int16 fake-quant whose ONNX form is a placeholder node, `stereokit::FakeQuant16`.

    The TorchScript exporter writes QuantizeLinear only for the 8-bit ranges (and only up to opset
    20, while int16 needs 21); `onnx_export.lower_int16` turns each placeholder into an int16
    QuantizeLinear -> DequantizeLinear pair after the export.
    """

    @staticmethod
    def forward(ctx, x: Tensor, scale: float) -> Tensor:  # type: ignore[override]
        return torch.fake_quantize_per_tensor_affine(x, scale, 0, -32768, 32767)

    @staticmethod
    def symbolic(g, x, scale: float):  # type: ignore[no-untyped-def]
        out = g.op("stereokit::FakeQuant16", x, scale_f=float(scale))
        out.setType(x.type())  # same shape and type: tells the exporter's shape inference so
        return out


class ExportFakeQuant16(nn.Module):
    """A frozen 16-bit activation quantizer, as the exporter sees it."""

    def __init__(self, fq: FakeQuantize) -> None:
        super().__init__()
        if int(fq.zero_point.flatten()[0]) != 0:
            raise ValueError("16-bit activations are symmetric (zero point 0)")
        self.scale = float(fq.scale.flatten()[0])

    def forward(self, x: Tensor) -> Tensor:
        return FakeQuant16.apply(x, self.scale)


def _export_16bit(model: nn.Module) -> None:
    for name, child in list(model.named_children()):
        if is_16bit(child):
            setattr(model, name, ExportFakeQuant16(child))
        else:
            _export_16bit(child)


def export_copy(model: nn.Module) -> nn.Module:
    """Eval, observers frozen, BN folded; 16-bit fake-quants as exportable int16 placeholders."""
    folded = fold_bn(copy.deepcopy(model).cpu().eval())
    set_observers(folded, False, weights_too=True)
    _export_16bit(folded)
    return folded

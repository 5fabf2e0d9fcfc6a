"""Fuse, qconfig, prepare: the float StereoNet -> a fake-quant model for calibration and QAT.

QuantStereoNet puts a QuantStub in front of both images and a DeQuantStub behind every output,
so everything between runs quantized: convs (fused with BN and ReLU), adds, concatenations, the
cost-volume slices and multiplications, softmax and the soft-argmin regression, pooling, resizes.
"""

from __future__ import annotations

import copy
from typing import Iterator

import torch
import torch.ao.nn.intrinsic.qat as nniqat
from torch import Tensor, nn
from torch.ao.quantization import DeQuantStub, FakeQuantize, QuantStub, fuse_modules_qat, prepare_qat
from torch.ao.quantization.quantization_mappings import get_default_qat_module_mappings

from stereokit.config import StereokitConfig
from stereokit.models.stereonet import StereoNet
from stereokit.quant.qconfig import build_qconfig

_CONV_BN = ((nn.Conv2d, nn.BatchNorm2d), (nn.Conv3d, nn.BatchNorm3d))


class QuantStereoNet(nn.Module):
    """StereoNet between a QuantStub (both images share one input scale) and DeQuantStubs."""

    def __init__(self, model: StereoNet) -> None:
        super().__init__()
        self.quant = QuantStub()
        self.model = model
        self.dequant = DeQuantStub()
        self.cfg = model.cfg

    def forward(self, imgl: Tensor, imgr: Tensor) -> list[Tensor]:
        return [self.dequant(o) for o in self.model(self.quant(imgl), self.quant(imgr))]


def conv_bn_groups(model: nn.Module) -> Iterator[nn.Sequential]:
    """Every conv_bn() block: Sequential(conv, bn[, relu])."""
    for module in list(model.modules()):
        if isinstance(module, nn.Sequential) and len(module) in (2, 3):
            pair = (type(module[0]), type(module[1]))
            if pair in _CONV_BN and (len(module) == 2 or isinstance(module[2], nn.ReLU)):
                yield module


def fuse_stereonet(model: nn.Module) -> nn.Module:
    """Conv + BN (+ ReLU) -> torch's QAT-able fused modules (BN folded at conversion)."""
    for block in conv_bn_groups(model):
        fuse_modules_qat(block, [[str(i) for i in range(len(block))]], inplace=True)
    return model


def _fixed_layers(model: nn.Module) -> list[nn.Module]:
    return [model.head.cost_volume.group_reduce, model.head.soft_argmin.regression]


def prepare_quant_model(float_model: StereoNet, cfg: StereokitConfig) -> QuantStereoNet:
    """A fake-quant copy of the float model: fused, qconfig set, observers and fake-quant inserted."""
    model = QuantStereoNet(copy.deepcopy(float_model)).train()
    fuse_stereonet(model)
    model.qconfig = build_qconfig(cfg.quant, cfg.train.calibration)
    for name in cfg.quant.float_modules:
        module = model.get_submodule(name)
        module.qconfig = None
    mapping = dict(get_default_qat_module_mappings())
    prepare_qat(model, mapping=mapping, inplace=True)
    # The fixed correlation and regression weights stay fixed through QAT.
    for layer in _fixed_layers(model.model):
        layer.weight.requires_grad_(False)
    return model


def activation_fake_quants(model: nn.Module) -> Iterator[tuple[str, FakeQuantize]]:
    for name, module in model.named_modules():
        if isinstance(module, FakeQuantize) and not name.endswith("weight_fake_quant"):
            yield name, module


def set_observers(model: nn.Module, enabled: bool, weights_too: bool = False) -> None:
    for name, module in model.named_modules():
        if isinstance(module, FakeQuantize) and (weights_too or not name.endswith("weight_fake_quant")):
            module.enable_observer(enabled)


def set_fake_quant(model: nn.Module, enabled: bool) -> None:
    for module in model.modules():
        if isinstance(module, FakeQuantize):
            module.enable_fake_quant(enabled)


def freeze_bn(model: nn.Module) -> None:
    model.apply(nniqat.freeze_bn_stats)


def activation_scales(model: nn.Module) -> dict[str, dict[str, float | int]]:
    """Per activation fake-quant: scale, zero point and range, for the stage record."""
    scales = {}
    for name, fq in activation_fake_quants(model):
        scales[name.removesuffix(".activation_post_process")] = {
            "scale": float(fq.scale.flatten()[0]),
            "zero_point": int(fq.zero_point.flatten()[0]),
            "quant_min": int(fq.quant_min),
            "quant_max": int(fq.quant_max),
        }
    return scales


def quantized_layers(model: nn.Module) -> list[str]:
    """Names of every conv that has a weight fake-quant (a test walks these)."""
    return [name for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Conv3d)) and hasattr(m, "weight_fake_quant")]

"""Fuse, qconfig, prepare: the float StereoNet -> a fake-quant model for calibration and QAT.

QuantStereoNet puts a QuantStub in front of both images and a DeQuantStub behind every output,
so everything between runs quantized: convs (fused with BN and ReLU), adds, concatenations, the
cost-volume slices and multiplications, softmax and the soft-argmin regression, pooling, resizes.
"""

from __future__ import annotations

import copy
import fnmatch
import re
from contextlib import contextmanager
from typing import Iterator

import torch
import torch.ao.nn.intrinsic.qat as nniqat
import torch.ao.nn.quantized as nnq
from torch import Tensor, nn
from torch.ao.quantization import DeQuantStub, FakeQuantize, FixedQParamsFakeQuantize, QuantStub, fuse_modules_qat, prepare_qat
from torch.ao.quantization.observer import FixedQParamsObserver
from torch.ao.quantization.quantization_mappings import get_default_qat_module_mappings

from stereokit.config import StereokitConfig
from stereokit.errors import StereokitError
from stereokit.models.blocks import Functional, Requantized
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


class Island(nn.Module):
    """A module kept in float (quant.float_modules): a CPU fallback by name.

    Quantized inputs are dequantized on the way in; the output goes back to 8 bits through its own
    quantizer, so the layers around it stay integer.
    """

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.requant = QuantStub()

    def forward(self, *args: Tensor) -> Tensor:
        args = tuple(a.dequantize() if isinstance(a, Tensor) and a.is_quantized else a for a in args)
        return self.requant(self.inner(*args))

    @classmethod
    def from_observed(cls, observed: "Island") -> "Island":
        observed.requant = nnq.Quantize.from_float(observed.requant)
        return observed


# Where 16-bit activations may live, and the block int_infer simulates for each (torch has no int16
# kernels): the soft-argmin, and a refinement level as a whole (its conv_in reads the 16-bit concat).
DISPARITY_PATH = re.compile(r"^head\.(soft_argmin|refine\.\d+)(\.|$)")


def path_matches(name: str, pattern: str) -> bool:
    """fnmatch per dotted segment: `head.refine.*.add` is each level's add, not the adds inside it."""
    parts, wanted = name.split("."), pattern.split(".")
    return len(parts) == len(wanted) and all(fnmatch.fnmatchcase(p, w) for p, w in zip(parts, wanted))


def match_modules(model: nn.Module, patterns: list[str], setting: str) -> list[str]:
    """Module paths (inside StereoNet) matching each pattern; a pattern matching none is refused."""
    names = [name for name, _ in model.named_modules() if name]
    found: list[str] = []
    for pattern in patterns:
        hits = [n for n in names if path_matches(n, pattern)]
        if not hits:
            raise StereokitError(f"{setting}: '{pattern}' names no module of the model (paths look like head.refine.0.cat).")
        found += [h for h in hits if h not in found]
    return found


def disparity_blocks(names: list[str]) -> list[str]:
    """The disparity-path blocks (head.soft_argmin, head.refine.N) holding these 16-bit modules; a
    module elsewhere is refused."""
    blocks: list[str] = []
    for name in names:
        hit = DISPARITY_PATH.match(name)
        if hit is None:
            raise StereokitError(f"quant.int16_modules: '{name}' is off the disparity path; 16-bit activations are "
                                 "supported in head.soft_argmin and head.refine.N only.")
        block = "head." + hit.group(1)
        if block not in blocks:
            blocks.append(block)
    return blocks


def check_precision_map(model: nn.Module, cfg: StereokitConfig) -> tuple[list[str], list[str]]:
    """(int16 module paths, float module paths) of the precision map; one sentence for a pattern
    that names no module or a module that cannot run at 16 bits."""
    int16 = match_modules(model, cfg.quant.int16_modules, "quant.int16_modules")
    disparity_blocks(int16)
    return int16, match_modules(model, cfg.quant.float_modules, "quant.float_modules")


def set_precision(model: nn.Module, cfg: StereokitConfig) -> None:
    """The precision map as qconfigs: int16 activations (int8 weights) for quant.int16_modules, float
    islands for quant.float_modules, the 8-bit contract everywhere else."""
    int16, float_ = check_precision_map(model, cfg)
    for name in int16:
        model.get_submodule(name).qconfig = build_qconfig(cfg.quant, cfg.train.calibration, bits16=True)
    for name in float_:
        inner = model.get_submodule(name)
        island = Island(inner)
        island.qconfig = build_qconfig(cfg.quant, cfg.train.calibration)
        inner.qconfig = None
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, island)


def is_16bit(fq: nn.Module) -> bool:
    return isinstance(fq, FakeQuantize) and fq.quant_max - fq.quant_min > 255


def softmax_at_16_bits(model: nn.Module) -> None:
    """torch gives every softmax a fixed 8-bit output scale of 1/256; a 16-bit softmax keeps
    1/32768 (its output lies in [0, 1])."""
    for module in model.modules():
        qconfig = getattr(module, "qconfig", None)
        if isinstance(module, nn.Softmax) and qconfig is not None and is_16bit(qconfig.activation()):
            observer = FixedQParamsObserver.with_args(scale=1.0 / 32768, zero_point=0, dtype=torch.qint32,
                                                      quant_min=-32768, quant_max=32767)
            module.activation_post_process = FixedQParamsFakeQuantize(observer=observer)


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
    return [m for name, m in model.named_modules() if name.endswith(("group_reduce", "regression"))]


def pin_fixed_weight_scales(model: nn.Module) -> None:
    """Give the fixed layers a weight scale that represents their weights exactly.

    The regression weights are k/D; with scale 1/(D*m), m = floor(64/(D-1)), weight k/D is the
    integer m*k. The group average 1/(C/G) is exact with scale 1/(64*C/G). (64: the half range that
    keeps x86 int8 kernels from saturating.) A min-max observer would pick max/127.5 instead and
    round every disparity level.
    """
    for layer in _fixed_layers(model):
        fq = layer.weight_fake_quant
        w = layer.weight.detach()
        if w.shape[1] > 1 and w.shape[0] == 1:  # regression: k/D over D input channels
            d = w.shape[1]
            scale = 1.0 / (d * max(1, 64 // max(1, d - 1)))
        else:
            scale = float(w.abs().max()) / 64.0
        channels = w.shape[0]
        fq.scale.resize_(channels).fill_(scale)
        fq.zero_point.resize_(channels).zero_()
        # what conversion reads: a symmetric observer's scale is max / ((qmax - qmin) / 2), times
        # the half-range observer's multiplier
        multiplier = getattr(fq.activation_post_process, "scale_multiplier", 1.0)
        bound = scale * (fq.quant_max - fq.quant_min) / 2 / multiplier
        fq.activation_post_process.min_val.resize_(channels).fill_(-bound)
        fq.activation_post_process.max_val.resize_(channels).fill_(bound)
        fq.disable_observer()
        fq.pinned = True


def eager_quant_modules(model: nn.Module) -> nn.Module:
    """The model's plain `Functional` ops and `Requantized` ends -> torch.ao's FloatFunctional and
    Quant/DeQuantStub, which eager prepare observes (no state of their own: the keys do not change)."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, Functional):
                setattr(parent, name, nnq.FloatFunctional())
            elif isinstance(child, Requantized):
                child.dequant, child.quant = DeQuantStub(), QuantStub()
    return model


def prepare_quant_model(float_model: StereoNet, cfg: StereokitConfig) -> QuantStereoNet:
    """A fake-quant copy of the float model: fused, qconfig set, observers and fake-quant inserted."""
    model = QuantStereoNet(eager_quant_modules(copy.deepcopy(float_model))).train()
    fuse_stereonet(model)
    model.qconfig = build_qconfig(cfg.quant, cfg.train.calibration)
    set_precision(model.model, cfg)
    prepare_qat(model, mapping=dict(get_default_qat_module_mappings()), inplace=True)
    softmax_at_16_bits(model)
    # The fixed correlation and regression weights stay fixed through QAT, exactly representable.
    for layer in _fixed_layers(model.model):
        layer.weight.requires_grad_(False)
    pin_fixed_weight_scales(model.model)
    return model


def activation_fake_quants(model: nn.Module) -> Iterator[tuple[str, FakeQuantize]]:
    for name, module in model.named_modules():
        if isinstance(module, FakeQuantize) and not name.endswith("weight_fake_quant"):
            yield name, module


def set_observers(model: nn.Module, enabled: bool, weights_too: bool = False) -> None:
    for name, module in model.named_modules():
        if isinstance(module, FakeQuantize) and (weights_too or not name.endswith("weight_fake_quant")):
            module.enable_observer(enabled and not getattr(module, "pinned", False))


@contextmanager
def frozen_observers(model: nn.Module) -> Iterator[None]:
    """Evaluation must not move a fake-quant model's ranges: observers off, then as they were."""
    fakes = [m for m in model.modules() if isinstance(m, FakeQuantize)]
    saved = [m.observer_enabled.clone() for m in fakes]
    for m in fakes:
        m.disable_observer()
    try:
        yield
    finally:
        for m, state in zip(fakes, saved):
            m.observer_enabled.copy_(state)


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

"""One preparation of any stage's torch model for evaluation: what eval, infer and the demo's timing run.

Float models: BatchNorm folded into the conv before it (one kernel instead of conv + BN), NHWC
(channels_last) activations, which oneDNN runs without reordering, and the 3x3x3 aggregation convs
sent to oneDNN: at batch 1 PyTorch's backend rule picks its slow reference kernel (`slow_conv3d`)
whenever N*C*D*H <= 20480, which holds for every C=32 aggregation conv of the recipe model.
Fake-quant models (calibration, qat) keep their modules (their BN and quantizers are part of what
is measured) and only run NHWC. Integer models are left as they are. Weights never change: the
outputs match eager within float rounding (tests/models/test_inference.py).
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def conv2d_channels_last(model: nn.Module) -> nn.Module:
    """NHWC weights for every 2-D conv, in place (model.to(channels_last) refuses the 5-D Conv3d weights)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            m.weight.data = m.weight.data.contiguous(memory_format=torch.channels_last)
    return model


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Every Conv -> BN pair of a `conv_bn` block becomes one conv (eval statistics); in place."""
    for module in model.modules():
        if (isinstance(module, nn.Sequential) and len(module) >= 2
                and type(module[0]) in (nn.Conv2d, nn.Conv3d) and type(module[1]) in (nn.BatchNorm2d, nn.BatchNorm3d)):
            module[0] = fuse_conv_bn_eval(module[0], module[1])
            module[1] = nn.Identity()
    return model


class OneDnnConv3d(nn.Module):
    """A Conv3d that always runs on oneDNN on the CPU (float32, no autograd), else as torch would."""

    def __init__(self, conv: nn.Conv3d) -> None:
        super().__init__()
        self.conv = conv

    def forward(self, x: Tensor) -> Tensor:
        c = self.conv
        if x.device.type != "cpu" or x.dtype != torch.float32 or torch.is_grad_enabled() or c.padding_mode != "zeros":
            return c(x)
        return torch.mkldnn_convolution(x.contiguous(), c.weight, c.bias, c.padding, c.stride, c.dilation, c.groups)


def _onednn_conv3d(model: nn.Module) -> None:
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Conv3d:
                setattr(parent, name, OneDnnConv3d(child))


class InferenceModel(nn.Module):
    """The prepared net: takes and returns what StereoNet does; inputs go NHWC on the way in."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.cfg = getattr(net, "cfg", None)

    def forward(self, imgl: Tensor, imgr: Tensor) -> list[Tensor]:
        nhwc = torch.channels_last
        return self.net(imgl.contiguous(memory_format=nhwc), imgr.contiguous(memory_format=nhwc))


def is_quantized_int(model: nn.Module) -> bool:
    """An integer model (int_infer) holds quantized weight tensors; float and fake-quant ones do not."""
    return any(isinstance(t, Tensor) and t.is_quantized for t in model.state_dict().values())


def prepare_for_inference(model: nn.Module, device: torch.device | str = "cpu") -> nn.Module:
    """A copy of `model` ready for eval-only use on `device`; `model` itself is not touched
    (an integer model is returned as it is: its kernels are already what they will be)."""
    device = torch.device(device)
    if is_quantized_int(model):
        return model.eval()
    prepared = copy.deepcopy(model).eval().to(device)
    for p in prepared.parameters():
        p.requires_grad_(False)
    fake_quant = any(hasattr(m, "weight_fake_quant") for m in prepared.modules())
    if not fake_quant:
        fold_batchnorm(prepared)
        if device.type == "cpu":
            _onednn_conv3d(prepared)
    conv2d_channels_last(prepared)
    return InferenceModel(prepared).eval()

"""Conv building blocks shaped so eager-mode quantization can fuse and observe them.

Every conv + BN (+ ReLU) is an nn.Sequential named "0", "1", "2" (what a QAT fuser takes), and
every add/concat/mul is a `Functional` module so it gets its own observer. The model itself uses
no quantization API: stereokit.quant swaps in the quantizer's own modules when it prepares a copy.
"""

from __future__ import annotations

import functools
from typing import Callable

import torch
from torch import Tensor, nn


def autocast_enabled(x: Tensor) -> bool:
    """Whether autocast is on for x's device (the meta device, used for counting, has none)."""
    return torch.amp.is_autocast_available(x.device.type) and torch.is_autocast_enabled(x.device.type)


def float32_under_autocast(only_on: str | None = None) -> Callable[[Callable[..., Tensor]], Callable[..., Tensor]]:
    """A module's forward that runs in float32 (inputs cast up, autocast off inside) when autocast
    is on for its inputs' device (`only_on`: that device type only); otherwise as written."""

    def wrap(forward: Callable[..., Tensor]) -> Callable[..., Tensor]:
        @functools.wraps(forward)
        def run(self: nn.Module, *inputs: Tensor) -> Tensor:
            device = inputs[0].device.type
            if only_on in (None, device) and autocast_enabled(inputs[0]):
                with torch.autocast(device, enabled=False):
                    return forward(self, *(x.float() for x in inputs))
            return forward(self, *inputs)

        return run

    return wrap


def conv_bn(cin: int, cout: int, kernel: int = 3, stride: int = 1, dilation: int = 1, relu: bool = True, dims: int = 2) -> nn.Sequential:
    conv_cls = nn.Conv2d if dims == 2 else nn.Conv3d
    bn_cls = nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d
    padding = dilation * (kernel - 1) // 2
    layers: list[nn.Module] = [
        conv_cls(cin, cout, kernel, stride=stride, padding=padding, dilation=dilation, bias=False),
        bn_cls(cout),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=False))
    return nn.Sequential(*layers)


class ResBlock(nn.Module):
    """Two 3x3 conv-BN with a skip; a 1x1 conv-BN projection when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = conv_bn(cin, cout, 3, stride, dilation, relu=True)
        self.conv2 = conv_bn(cout, cout, 3, 1, dilation, relu=False)
        self.skip = conv_bn(cin, cout, 1, stride, relu=False) if (stride != 1 or cin != cout) else nn.Identity()
        self.add = Functional()

    def forward(self, x: Tensor) -> Tensor:
        # add_relu, not add then ReLU: the quantizer then sits after the ReLU, and the exported
        # graph is DQ -> Add -> Relu -> Q, which runtimes lower to one integer add.
        return self.add.add_relu(self.conv2(self.conv1(x)), self.skip(x))


class Functional(nn.Module):
    """add + ReLU, mul and cat as a module, so that each result can have a quantizer of its own
    (the method names are those of torch's FloatFunctional, which stereokit.quant puts in its place)."""

    def add_relu(self, x: Tensor, y: Tensor) -> Tensor:
        return torch.relu(torch.add(x, y))

    def mul(self, x: Tensor, y: Tensor) -> Tensor:
        return torch.mul(x, y)

    def cat(self, xs: list[Tensor], dim: int = 0) -> Tensor:
        return torch.cat(xs, dim=dim)


class Requantized(nn.Module):
    """A data-movement op (resize, pooling) with its own output quantizer.

    Float model: just `op` (the two ends are identities). Quantized (stereokit.quant puts a dequant
    and a quant stub at the ends): dequantize, op, quantize to the observed output scale, so the
    exported graph is DQ -> op -> Q and the next integer op has a quantized input.
    """

    def __init__(self, op: nn.Module) -> None:
        super().__init__()
        self.dequant: nn.Module = nn.Identity()
        self.op = op
        self.quant: nn.Module = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.quant(self.op(self.dequant(x)))

"""Conv building blocks shaped so eager-mode quantization can fuse and observe them.

Every conv + BN (+ ReLU) is an nn.Sequential named "0", "1", "2" (what `fuse_modules_qat`
takes), and every add/concat/mul goes through a FloatFunctional so it gets its own observer.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.ao.nn.quantized import FloatFunctional
from torch.ao.quantization import DeQuantStub, QuantStub


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
        self.add = FloatFunctional()

    def forward(self, x: Tensor) -> Tensor:
        # add_relu, not add then ReLU: the quantizer then sits after the ReLU, and the exported
        # graph is DQ -> Add -> Relu -> Q, which runtimes lower to one integer add.
        return self.add.add_relu(self.conv2(self.conv1(x)), self.skip(x))


class Requantized(nn.Module):
    """A data-movement op (resize, pooling) with its own output quantizer.

    Float model: just `op`. Quantized: dequantize, op, quantize to the observed output scale, so the
    exported graph is DQ -> op -> Q and the next integer op has a quantized input.
    """

    def __init__(self, op: nn.Module) -> None:
        super().__init__()
        self.dequant = DeQuantStub()
        self.op = op
        self.quant = QuantStub()

    def forward(self, x: Tensor) -> Tensor:
        return self.quant(self.op(self.dequant(x)))

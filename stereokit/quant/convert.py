"""int_infer: the fake-quant model converted to integer arithmetic (torch's quantized CPU kernels).

BN is folded into the convs, weights become int8, convs accumulate in int32 and requantize to the
next layer's scale: the same scales and zero points the fake-quant model learned. Runs on CPU only
(PyTorch has no quantized CUDA kernels for these ops).

torch has no int16 kernels: each disparity-path block that holds a 16-bit activation (see
`disparity_blocks`) stays its fake-quant self, a simulation on the quantization grid (every activation
an int16 or int8 grid value, float32 accumulation, round-half-to-even), which is also how ONNX
Runtime runs the IR's int16 DQ -> op -> Q groups.
"""

from __future__ import annotations

import copy

import torch
import torch.ao.nn.quantized as nnq
from torch import Tensor, nn
from torch.ao.quantization import FakeQuantize, convert
from torch.ao.quantization.quantization_mappings import get_default_static_quant_module_mappings

from stereokit.quant.prepare import Island, QuantStereoNet, disparity_blocks, is_16bit

# The quantizer of each simulated block's output (what the next, integer, block reads).
_OUTPUT_QUANTIZER = {"soft_argmin": "regression.activation_post_process", "refine": "add.activation_post_process"}


class Simulated(nn.Module):
    """A block run as its fake-quant simulation between integer blocks.

    Quantized inputs are dequantized (exact: the values are grid points); an 8-bit output leaves as
    a quantized tensor with its quantizer's scale, a 16-bit one as float on the int16 grid (its
    readers are simulated too, or the final DeQuantize, which passes float through).
    """

    def __init__(self, inner: nn.Module, output: FakeQuantize) -> None:
        super().__init__()
        self.inner = inner
        self.out_qparams = None if is_16bit(output) else (float(output.scale.flatten()[0]), int(output.zero_point.flatten()[0]), output.dtype)

    def forward(self, *args: Tensor) -> Tensor:
        args = tuple(a.dequantize() if isinstance(a, Tensor) and a.is_quantized else a for a in args)
        out = self.inner(*args)
        if self.out_qparams is None:
            return out
        scale, zero_point, dtype = self.out_qparams
        return torch.quantize_per_tensor(out, scale, zero_point, dtype)

    @classmethod
    def from_observed(cls, observed: "Simulated") -> "Simulated":
        return observed


def simulate_int16_blocks(model: QuantStereoNet) -> None:
    """Wrap every 16-bit block of `model` (in place) so conversion leaves it alone."""
    net = model.model
    for name in disparity_blocks(_precision_names(net)):
        inner = net.get_submodule(name)
        output = inner.get_submodule(_OUTPUT_QUANTIZER[name.split(".")[1]])
        parent_name, _, child = name.rpartition(".")
        setattr(net.get_submodule(parent_name), child, Simulated(inner, output))


def _precision_names(net: nn.Module) -> list[str]:
    """Modules of the prepared model whose own output quantizer is 16-bit."""
    return [name.removesuffix(".activation_post_process") for name, m in net.named_modules()
            if name.endswith("activation_post_process") and is_16bit(m)]


def to_int_model(qat_model: QuantStereoNet) -> nn.Module:
    """Note: PyTorch's x86 engine (fbgemm) and ONNX Runtime both multiply uint8 by int8 in 16-bit
    lanes on CPUs without VNNI and saturate with full-range activations; `quant.reduce_range`
    (7-bit activations, the default) keeps the integer model equal to the fake-quant one."""
    model = copy.deepcopy(qat_model).cpu().eval()
    simulate_int16_blocks(model)
    mapping = dict(get_default_static_quant_module_mappings())
    mapping[nn.Softmax] = nnq.Softmax
    kept = {"observed_to_quantized_custom_module_class": {Island: Island, Simulated: Simulated}}
    # remove_qconfig=False: torch would also strip the observers inside the kept blocks' fake-quants.
    int_model = convert(model, mapping=mapping, inplace=False, remove_qconfig=False, convert_custom_config_dict=kept)
    return bias_on_the_int32_grid(int_model)


def bias_on_the_int32_grid(model: nn.Module) -> nn.Module:
    """Round every integer conv's bias to its int32 accumulator grid (input scale x weight scale), in place.

    ONNX Runtime's QLinearConv, and an integer accelerator, add the bias as an int32 at that scale;
    torch's kernels add the float bias before requantizing. The difference flips the rounding of a
    few outputs per layer, and the flips add up along the network (0.056 px mean disagreement
    between compiled and int_infer on the demo without this, 0.019 with it). The input scales are
    read from one forward pass: a quantized tensor carries its scale whatever its values.
    """
    convs = [m for m in model.modules() if isinstance(m, (nnq.Conv2d, nnq.Conv3d))]
    input_scale: dict[int, float] = {}

    def record(module: nn.Module, inputs: tuple[Tensor, ...]) -> None:
        input_scale.setdefault(id(module), float(inputs[0].q_scale()))

    hooks = [m.register_forward_pre_hook(record) for m in convs]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, 64, 64), torch.zeros(1, 3, 64, 64))
    finally:
        for hook in hooks:
            hook.remove()
    for conv in convs:
        weight, bias = conv.weight(), conv.bias()
        if bias is None or id(conv) not in input_scale:
            continue
        if weight.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
            weight_scale = weight.q_per_channel_scales().float()
        else:
            weight_scale = torch.full((weight.shape[0],), weight.q_scale())
        step = weight_scale * input_scale[id(conv)]
        conv.set_weight_bias(weight, torch.round(bias / step) * step)
    return model

"""int_infer: the fake-quant model converted to integer arithmetic (torch's quantized CPU kernels).

BN is folded into the convs, weights become int8, convs accumulate in int32 and requantize to the
next layer's scale: the same scales and zero points the fake-quant model learned. Runs on CPU only
(PyTorch has no quantized CUDA kernels for these ops).

torch has no int16 kernels: what holds or reads a 16-bit activation (the soft-argmin; a refinement
level's upsample, concatenation, first conv, residual conv and add) stays its fake-quant self, a
simulation on the quantization grid (every activation an int16 or int8 grid value, float32
accumulation, round-half-to-even), which is also how ONNX Runtime runs the IR's int16 DQ -> op -> Q
groups. Residual adds and average pools round as ONNX Runtime's integer kernels do
(`integer_adds_and_pools`), so that the compiled model and this one agree to the bit where both are
integer.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.ao.nn.quantized as nnq
from torch import Tensor, nn
from torch.ao.quantization import FakeQuantize, convert
from torch.ao.quantization.quantization_mappings import get_default_static_quant_module_mappings

from stereokit.models.blocks import Requantized
from stereokit.quant.prepare import Island, QuantStereoNet, disparity_blocks, is_16bit

# The quantizer of the soft-argmin's output (what the first refinement level reads).
_SOFT_ARGMIN_OUTPUT = "regression.activation_post_process"
# A refinement level's children in the order its forward runs them, and whose outputs each reads
# (RefineLevel.forward): the level's input (the coarser disparity) is read by the upsample.
_REFINE_READS = {"upsample": (), "cat": ("upsample",), "conv_in": ("cat",), "blocks": ("conv_in",),
                 "residual": ("blocks",), "add": ("upsample", "residual")}


def _dequantized(x: object) -> object:
    if isinstance(x, Tensor) and x.is_quantized:
        return x.dequantize()
    if isinstance(x, (list, tuple)):
        return type(x)(_dequantized(v) for v in x)
    return x


class Simulated(nn.Module):
    """A module run as its fake-quant simulation between integer modules.

    Quantized inputs are dequantized (exact: the values are grid points); an 8-bit output leaves as
    a quantized tensor with its quantizer's scale, a 16-bit one as float on the int16 grid (its
    readers are simulated too, or the final DeQuantize, which passes float through). The functional
    ops (cat, add_relu) are simulated through the same methods.
    """

    def __init__(self, inner: nn.Module, output: FakeQuantize) -> None:
        super().__init__()
        self.inner = inner
        self.out_qparams = None if is_16bit(output) else (float(output.scale.flatten()[0]), int(output.zero_point.flatten()[0]), output.dtype)

    def _leave(self, out: Tensor) -> Tensor:
        if self.out_qparams is None:
            return out
        scale, zero_point, dtype = self.out_qparams
        return torch.quantize_per_tensor(out, scale, zero_point, dtype)

    def forward(self, *args: Tensor) -> Tensor:
        return self._leave(self.inner(*_dequantized(args)))

    def cat(self, xs: list[Tensor], dim: int = 0) -> Tensor:
        return self._leave(self.inner.cat(_dequantized(xs), dim=dim))

    def add_relu(self, x: Tensor, y: Tensor) -> Tensor:
        return self._leave(self.inner.add_relu(*_dequantized((x, y))))

    @classmethod
    def from_observed(cls, observed: "Simulated") -> "Simulated":
        return observed


def _output_quantizer(module: nn.Module) -> FakeQuantize:
    """The last activation quantizer a module runs: its output's."""
    return [m for n, m in module.named_modules() if n.endswith("activation_post_process") and isinstance(m, FakeQuantize)][-1]


def simulate_int16_blocks(model: QuantStereoNet) -> None:
    """Wrap (in place) what torch cannot run in integer so that conversion leaves it alone: the
    soft-argmin whole, and in each refinement level the children that hold a 16-bit activation or
    read one. The rest of a level (its residual blocks, in the reference's map) becomes integer."""
    net = model.model
    for name in disparity_blocks(_precision_names(net)):
        block = net.get_submodule(name)
        if name.startswith("head.soft_argmin"):
            net.head.soft_argmin = Simulated(block, block.get_submodule(_SOFT_ARGMIN_OUTPUT))
            continue
        wide: set[str] = set()  # children whose output is 16-bit
        for child, reads in _REFINE_READS.items():
            module = block.get_submodule(child)
            holds_16bit = any(is_16bit(m) for m in module.modules())
            if holds_16bit or any(r in wide for r in reads) or not reads:
                output = _output_quantizer(module)
                if is_16bit(output):
                    wide.add(child)
                setattr(block, child, Simulated(module, output))


def _precision_names(net: nn.Module) -> list[str]:
    """Modules of the prepared model whose own output quantizer is 16-bit."""
    return [name.removesuffix(".activation_post_process") for name, m in net.named_modules()
            if name.endswith("activation_post_process") and is_16bit(m)]


def use_fbgemm() -> None:
    """Run torch's integer kernels on fbgemm, where the CPU has it. torch's default engine ("x86") picks
    oneDNN kernels for some convs on CPUs with VNNI or AMX, which round ties apart from ONNX Runtime:
    on such a CPU the first conv already differed by a step and the neck by 5% of values; on fbgemm
    the neck is equal to the bit, as on an AVX2 CPU (docs/performance.md, "Agreement")."""
    if "fbgemm" in torch.backends.quantized.supported_engines:
        torch.backends.quantized.engine = "fbgemm"


def to_int_model(qat_model: QuantStereoNet) -> nn.Module:
    """Note: PyTorch's x86 engine (fbgemm) and ONNX Runtime both multiply uint8 by int8 in 16-bit
    lanes on CPUs without VNNI and saturate when both operands are near full range; `quant.reduce_range`
    (7-bit weights, the default) keeps the integer model equal to the fake-quant one. Weights are
    packed for the engine in use, so fbgemm is chosen before converting (use_fbgemm)."""
    use_fbgemm()
    model = copy.deepcopy(qat_model).cpu().eval()
    simulate_int16_blocks(model)
    mapping = dict(get_default_static_quant_module_mappings())
    mapping[nn.Softmax] = nnq.Softmax
    kept = {"observed_to_quantized_custom_module_class": {Island: Island, Simulated: Simulated}}
    # remove_qconfig=False: torch would also strip the observers inside the kept blocks' fake-quants.
    int_model = convert(model, mapping=mapping, inplace=False, remove_qconfig=False, convert_custom_config_dict=kept)
    return integer_adds_and_pools(bias_on_the_int32_grid(int_model))


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


def integer_adds_and_pools(model: nn.Module) -> nn.Module:
    """Residual adds and average pools rounded as the integer runtime rounds them, in place.

    torch requantizes both as (value / scale) rounded, then plus the zero point; ONNX Runtime's x86
    QLinearAdd folds the zero points into one float32 constant and uses fused multiply-adds, and its
    QLinearAveragePool adds the zero point before rounding. The two disagree on near-ties: on the demo
    1 add output in 10^4 and 2.5% of the half-resolution image pyramid (whose averages of four grid
    values are often exact ties), flips that the network spreads into 9.5% of the cost aggregation's
    values. With this the neck and the cost volume agree with the compiled model to the bit
    (docs/performance.md, "Agreement").
    """
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nnq.QFunctional:
                setattr(parent, name, RuntimeAddFunctional.from_qfunctional(child))
            elif isinstance(child, Requantized) and isinstance(child.op, nn.AvgPool2d) and isinstance(child.quant, nnq.Quantize):
                setattr(parent, name, RoundedAvgPool(child.op, float(child.quant.scale), int(child.quant.zero_point)))
    return model


def _int_range(t: Tensor) -> tuple[int, int]:
    info = torch.iinfo(t.int_repr().dtype)
    return info.min, info.max


class RuntimeAddFunctional(nnq.QFunctional):
    """torch's quantized functional ops, with add_relu rounded as ONNX Runtime's x86 QLinearAdd rounds it:
    q = round(a * Ra + (b * Rb + (zc - (Ra * za + Rb * zb)))) with Ra = sa / sc, Rb = sb / sc, in float32
    with fused multiply-adds, clamped at zc (ReLU) and the type's maximum."""

    @classmethod
    def from_qfunctional(cls, other: nnq.QFunctional) -> "RuntimeAddFunctional":
        new = cls()
        new.scale, new.zero_point = other.scale, other.zero_point
        return new

    def add_relu(self, x: Tensor, y: Tensor) -> Tensor:
        f32 = np.float32
        scale, zero_point = float(self.scale), int(self.zero_point)
        ra, rb = f32(x.q_scale()) / f32(scale), f32(y.q_scale()) / f32(scale)
        constant = f32(zero_point) - (ra * f32(x.q_zero_point()) + rb * f32(y.q_zero_point()))
        # a float32 product is exact in float64: one rounding to float32 afterwards is the fused multiply-add's
        partial = (y.int_repr().double() * float(rb) + float(constant)).float()
        value = (x.int_repr().double() * float(ra) + partial.double()).float()
        low, high = _int_range(x)
        q = torch.round(value).clamp(max(low, zero_point), high).to(x.int_repr().dtype)
        return torch._make_per_tensor_quantized_tensor(q, scale, zero_point)


class RoundedAvgPool(nn.Module):
    """Average pooling of a quantized tensor as the integer runtime computes it: dequantize, sum the
    window row by row in float32, divide by its size, then round(y / scale + zero_point)."""

    def __init__(self, pool: nn.AvgPool2d, scale: float, zero_point: int) -> None:
        super().__init__()
        if pool.padding not in (0, (0, 0)) or pool.ceil_mode:
            raise ValueError("RoundedAvgPool: only unpadded, floor-mode pooling")
        self.kernel = pool.kernel_size if isinstance(pool.kernel_size, tuple) else (pool.kernel_size, pool.kernel_size)
        stride = pool.stride or pool.kernel_size
        self.stride = stride if isinstance(stride, tuple) else (stride, stride)
        self.scale, self.zero_point = scale, zero_point

    def forward(self, x: Tensor) -> Tensor:
        f32 = torch.float32
        values = (x.int_repr().to(torch.int32) - x.q_zero_point()).to(f32) * torch.tensor(x.q_scale(), dtype=f32)
        (kh, kw), (sh, sw) = self.kernel, self.stride
        oh, ow = (values.shape[-2] - kh) // sh + 1, (values.shape[-1] - kw) // sw + 1
        total = None
        for i in range(kh):
            for j in range(kw):
                window = values[..., i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw]
                total = window if total is None else total + window
        mean = total / torch.tensor(float(kh * kw), dtype=f32)
        q = torch.round(mean / torch.tensor(self.scale, dtype=f32) + torch.tensor(float(self.zero_point), dtype=f32))
        low, high = _int_range(x)
        return torch._make_per_tensor_quantized_tensor(q.clamp(low, high).to(x.int_repr().dtype), self.scale, self.zero_point)

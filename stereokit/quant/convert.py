"""int_infer: the fake-quant model converted to integer arithmetic (torch's quantized CPU kernels).

BN is folded into the convs, weights become int8, convs accumulate in int32 and requantize to the
next layer's scale: the same scales and zero points the fake-quant model learned. Runs on CPU only
(PyTorch has no quantized CUDA kernels for these ops).
"""

from __future__ import annotations

import copy

import torch.ao.nn.quantized as nnq
from torch import nn
from torch.ao.quantization import convert
from torch.ao.quantization.quantization_mappings import get_default_static_quant_module_mappings

from stereokit.quant.prepare import Island, QuantStereoNet


def to_int_model(qat_model: QuantStereoNet) -> nn.Module:
    """Note: PyTorch's x86 engine (fbgemm) and ONNX Runtime both multiply uint8 by int8 in 16-bit
    lanes on CPUs without VNNI and saturate with full-range activations; `quant.reduce_range`
    (7-bit activations, the default) keeps the integer model equal to the fake-quant one."""
    model = copy.deepcopy(qat_model).cpu().eval()
    mapping = dict(get_default_static_quant_module_mappings())
    mapping[nn.Softmax] = nnq.Softmax
    islands = {"observed_to_quantized_custom_module_class": {Island: Island}}
    # remove_qconfig=False: torch would also strip the observers inside the islands' fake-quants.
    return convert(model, mapping=mapping, inplace=False, remove_qconfig=False, convert_custom_config_dict=islands)

"""The quantization contract as qconfigs: int8 symmetric per-channel weights, per-tensor activations.

Weights use [-128, 127] (the ONNX exporter refuses [-127, 127]) and the plain FakeQuantize
module, not the fused moving-average op, which has no ONNX symbolic.
"""

from __future__ import annotations

import torch
from torch.ao.quantization import FakeQuantize, MovingAverageMinMaxObserver, MovingAveragePerChannelMinMaxObserver, QConfig

from stereokit.config import CalibrationConfig, QuantConfig
from stereokit.quant.observers import PercentileObserver

ACTIVATION_RANGES = {
    "uint8": (0, 255, torch.quint8, torch.per_tensor_affine),
    "int8": (-128, 127, torch.qint8, torch.per_tensor_symmetric),
    "int16": (-32768, 32767, torch.qint32, torch.per_tensor_symmetric),
}


def weight_fake_quant(reduce_range: bool = False) -> type:
    return FakeQuantize.with_args(
        observer=HalfRangeWeightObserver if reduce_range else MovingAveragePerChannelMinMaxObserver, quant_min=-128, quant_max=127,
        dtype=torch.qint8, qscheme=torch.per_channel_symmetric, ch_axis=0,
    )


class HalfRangeWeightObserver(MovingAveragePerChannelMinMaxObserver):
    """Per-channel symmetric weights that use 7 of their 8 bits (|q| <= 64).

    The scale is twice the full-range one, so the stored int8 range and the exported QDQ stay
    [-128, 127] while every weight lies in [-64, 64].
    """

    scale_multiplier = 2.0

    def calculate_qparams(self):  # type: ignore[no-untyped-def]
        scale, zero_point = super().calculate_qparams()
        return scale * self.scale_multiplier, zero_point


def activation_fake_quant(dtype: str, calibration: CalibrationConfig) -> type:
    qmin, qmax, qdtype, qscheme = ACTIVATION_RANGES[dtype]
    if calibration.observer == "percentile":
        return FakeQuantize.with_args(observer=PercentileObserver, percentile=calibration.percentile,
                                      quant_min=qmin, quant_max=qmax, dtype=qdtype, qscheme=qscheme)
    return FakeQuantize.with_args(observer=MovingAverageMinMaxObserver, averaging_constant=0.01,
                                  quant_min=qmin, quant_max=qmax, dtype=qdtype, qscheme=qscheme)


def build_qconfig(quant: QuantConfig, calibration: CalibrationConfig, bits16: bool = False) -> QConfig:
    dtype = "int16" if bits16 else quant.activation_dtype
    return QConfig(activation=activation_fake_quant(dtype, calibration), weight=weight_fake_quant(quant.reduce_range))

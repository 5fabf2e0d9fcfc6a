"""OpenVINO as a runtime of the QDQ IR: compile it to OpenVINO's IR (xml + bin), run it on the CPU,
and read back the precision each layer really runs at.

OpenVINO's CPU plugin turns QuantizeLinear/DequantizeLinear pairs around a conv into an int8 kernel
(its low-precision transformations) and runs what is left in its inference precision: bf16 by
default on a CPU with AVX-512 BF16 or AMX, which moves the int16 disparity path (softmax,
regression, refinement) off the grid the torch fixed-point model uses. stereokit asks for f32
(INFERENCE_PRECISION_HINT), so the float islands compute as ONNX Runtime's do.
"""

from __future__ import annotations

import re
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stereokit.errors import StereokitError

INSTALL = "pip install openvino"
CONFIG = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
_BLOB = struct.Struct("<4sQ")  # b"OVIR" + xml length; then xml, then bin


def available() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def version() -> str:
    import openvino as ov

    return ov.__version__


def _require() -> Any:
    try:
        import openvino as ov
    except ImportError:
        raise StereokitError(f"OpenVINO is not installed on this machine; install it ({INSTALL}) to compile or run an OpenVINO model.") from None
    return ov


def convert_ir(onnx_bytes: bytes) -> bytes:
    """The QDQ ONNX IR -> OpenVINO's IR (xml + bin, weights kept f32 as the IR has them), as one blob.
    The same IR and OpenVINO version give the same bytes."""
    ov = _require()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "model.onnx"
        src.write_bytes(onnx_bytes)
        model = ov.convert_model(str(src))
        stable_names(model)
        ov.save_model(model, str(Path(tmp) / "model.xml"), compress_to_fp16=False)
        xml, weights = (Path(tmp) / "model.xml").read_bytes(), (Path(tmp) / "model.bin").read_bytes()
    return _BLOB.pack(b"OVIR", len(xml)) + xml + weights


_AUTO_NAME = re.compile(r"^[A-Za-z]+_\d+$")


def stable_names(model: Any) -> None:
    """OpenVINO names the nodes it creates from a process-wide counter (Constant_13151); renamed in
    graph order, so two conversions of one IR give the same bytes."""
    for index, op in enumerate(model.get_ordered_ops()):
        if _AUTO_NAME.match(op.get_friendly_name()):
            op.set_friendly_name(f"{op.get_type_name()}_sk{index}")


def split_blob(blob: bytes, name: str) -> tuple[bytes, bytes]:
    if len(blob) < _BLOB.size:
        raise StereokitError(f"{name}: its OpenVINO model is truncated; re-run 'stereokit compile --runtime openvino'.")
    magic, xml_len = _BLOB.unpack_from(blob)
    if magic != b"OVIR" or _BLOB.size + xml_len > len(blob):
        raise StereokitError(f"{name}: its OpenVINO model is damaged; re-run 'stereokit compile --runtime openvino'.")
    return blob[_BLOB.size:_BLOB.size + xml_len], blob[_BLOB.size + xml_len:]


def compile_blob(blob: bytes, name: str) -> Any:
    ov = _require()
    xml, weights = split_blob(blob, name)
    core = ov.Core()
    try:
        model = core.read_model(model=xml, weights=ov.Tensor(np.frombuffer(weights, np.uint8).copy()))
        return core.compile_model(model, "CPU", CONFIG)
    except RuntimeError as exc:
        raise StereokitError(f"{name}: OpenVINO {version()} cannot load it ({str(exc).splitlines()[0][:160]}); "
                             "re-compile it with this OpenVINO.") from None


@dataclass
class LayerPrecision:
    layer_type: str
    precision: str  # the runtime precision OpenVINO chose: u8 / i8 (integer kernel), f32, bf16, ...
    original: list[str]  # the IR's node names fused into this layer


def layer_precisions(compiled: Any) -> list[LayerPrecision]:
    """What ran in which precision, read from OpenVINO's own runtime model."""
    out = []
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        names = info["originalLayersNames"].astype(str) if "originalLayersNames" in info else ""
        out.append(LayerPrecision(info["layerType"].astype(str), info["runtimePrecision"].astype(str),
                                  [n for n in names.split(",") if n]))
    return out


def node_precisions(compiled: Any, nodes: list[str]) -> dict[str, str]:
    """For each IR node name, the precision of the OpenVINO layer it was fused into."""
    by_name: dict[str, str] = {}
    for layer in layer_precisions(compiled):
        for original in layer.original:
            by_name.setdefault(original, layer.precision)
    return {n: by_name.get(n, "fused") for n in nodes}


@dataclass
class OpenVinoRuntime:
    """The interface infer and validate-bpu call (as deploy.runtime.Runtime): static shape, maxdisp, run."""

    compiled: Any
    height: int
    width: int
    maxdisp: float
    source: str = "hbm"
    # Its quantize rounds 1 in ~1e5 values the other way from ONNX's round(x / scale) at scales that
    # are not powers of two (docs/performance.md), so agreement with int_infer is judged by EPE.
    exact_rounding = False

    @property
    def runtime(self) -> str:
        return f"openvino {version()}"

    @property
    def provider(self) -> str:
        return f"openvino {version()} CPU"

    def __call__(self, imgl: np.ndarray, imgr: np.ndarray) -> np.ndarray:
        request = self.compiled.create_infer_request()
        result = request.infer({"imgl": imgl.astype(np.float32), "imgr": imgr.astype(np.float32)})
        return np.asarray(next(iter(result.values())))


def open_openvino(blob: bytes, name: str, maxdisp: float) -> OpenVinoRuntime:
    compiled = compile_blob(blob, name)
    shape = compiled.inputs[0].get_partial_shape()
    if shape.is_dynamic or len(shape) != 4:
        raise StereokitError(f"{name}: the OpenVINO model's input shape {shape} is not static NCHW.")
    return OpenVinoRuntime(compiled, int(shape[2].get_length()), int(shape[3].get_length()), maxdisp)


def measure_latency_ms(blob: bytes, height: int, width: int, runs: int = 5, warmup: int = 1) -> float:
    from stereokit.deploy.perf import median_ms

    runtime = open_openvino(blob, "<compiled>", 1.0)
    rng = np.random.default_rng(0)
    left, right = (rng.standard_normal((1, 3, height, width)).astype(np.float32) for _ in range(2))
    return median_ms(lambda: runtime(left, right), runs, warmup)

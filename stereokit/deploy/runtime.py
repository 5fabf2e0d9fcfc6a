"""Running a compiled (.hbm) or ONNX model with ONNX Runtime: the stand-in for the board."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from stereokit.deploy.hbm import load_hbm
from stereokit.errors import StereokitError


@dataclass
class Runtime:
    session: ort.InferenceSession
    height: int
    width: int
    maxdisp: float
    source: str

    def __call__(self, imgl: np.ndarray, imgr: np.ndarray) -> np.ndarray:
        """[1,3,H,W] float32 normalised inputs at the model's shape -> [1,1,H,W] disparity (px)."""
        return self.session.run(None, {"imgl": imgl.astype(np.float32), "imgr": imgr.astype(np.float32)})[0]


def _session(model: bytes | str, name: str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
        raise StereokitError(f"{name}: ONNX Runtime cannot load the model ({str(exc).splitlines()[0][:160]}).") from None


def _static_shape(session: ort.InferenceSession, name: str) -> tuple[int, int]:
    shape = session.get_inputs()[0].shape
    if len(shape) != 4 or not all(isinstance(d, int) for d in shape[2:]):
        raise StereokitError(f"{name}: the model's input shape {shape} is not static NCHW.")
    return int(shape[2]), int(shape[3])


def open_compiled(path: Path) -> Runtime:
    compiled = load_hbm(path)
    session = _session(compiled.model, str(path))
    h, w = _static_shape(session, str(path))
    return Runtime(session, h, w, float(compiled.manifest.get("maxdisp", 0)), "hbm")


def open_onnx(path: Path, maxdisp: float) -> Runtime:
    session = _session(str(path), str(path))
    h, w = _static_shape(session, str(path))
    return Runtime(session, h, w, maxdisp, "onnx")

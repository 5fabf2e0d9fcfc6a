"""Running a compiled (.hbm) or ONNX model with ONNX Runtime: the stand-in for the board."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from stereokit.deploy import openvino_runtime
from stereokit.deploy.hbm import load_hbm
from stereokit.deploy.openvino_runtime import OpenVinoRuntime, open_openvino
from stereokit.deploy.onnx_export import INPUTS, OUTPUT
from stereokit.deploy.providers import make_session, node_placement, short_name
from stereokit.errors import StereokitError


# A runtime that quantizes with its own rounding (OpenVINO) is held to accuracy, not to int_infer's
# rounding: its EPE may be at most this much above the reference's (validate-bpu: int_infer's on the
# test split; plain compile: ONNX Runtime's on generated scenes). Its flips are noise of either sign
# (docs/performance.md), which per-pixel bars count and EPE does not.
EPE_REL_BAR = 0.005


@dataclass
class Runtime:
    session: ort.InferenceSession
    height: int
    width: int
    maxdisp: float
    source: str
    exact_rounding = True  # QLinear ops round as int_infer does: validate-bpu's per-pixel bar applies

    @property
    def runtime(self) -> str:
        return f"onnxruntime {ort.__version__}"

    @property
    def provider(self) -> str:
        """The execution provider that runs the model (cpu, cuda, tensorrt)."""
        return short_name(self.session.get_providers()[0])

    def __call__(self, imgl: np.ndarray, imgr: np.ndarray) -> np.ndarray:
        """[1,3,H,W] float32 normalised inputs at the model's shape -> [1,1,H,W] disparity (px)."""
        return self.session.run(None, {"imgl": imgl.astype(np.float32), "imgr": imgr.astype(np.float32)})[0]

    def placement(self, model: bytes | str, requested: str) -> dict[str, dict[str, int]]:
        """Nodes per provider and op type, from ONNX Runtime's profile of one run on zeros."""
        zeros = np.zeros((1, 3, self.height, self.width), np.float32)
        return node_placement(model, requested, {"imgl": zeros, "imgr": zeros}, integer_graph=self.source == "hbm")


def _session(model: bytes | str, name: str, provider: str, integer_graph: bool = False) -> ort.InferenceSession:
    try:
        session = make_session(model, provider, integer_graph)
    except StereokitError:
        raise
    except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
        raise StereokitError(f"{name}: ONNX Runtime cannot load the model ({str(exc).splitlines()[0][:160]}).") from None
    inputs = [i.name for i in session.get_inputs()]
    outputs = [o.name for o in session.get_outputs()]
    if sorted(inputs) != sorted(INPUTS) or outputs[:1] != [OUTPUT]:
        raise StereokitError(f"{name}: the model's inputs {inputs} and outputs {outputs} are not stereokit's "
                             f"({', '.join(INPUTS)} -> {OUTPUT}); export it with 'stereokit export'.")
    return session


def _static_shape(session: ort.InferenceSession, name: str) -> tuple[int, int]:
    shape = session.get_inputs()[0].shape
    if len(shape) != 4 or not all(isinstance(d, int) for d in shape[2:]):
        raise StereokitError(f"{name}: the model's input shape {shape} is not static NCHW.")
    return int(shape[2]), int(shape[3])


def _maxdisp(value: object, name: str) -> float:
    """The largest disparity the model was trained for; a file that does not say is refused."""
    try:
        maxdisp = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        maxdisp = float("nan")
    if not math.isfinite(maxdisp) or maxdisp <= 0:
        raise StereokitError(f"{name}: its metadata has no valid maxdisp (found {value!r}); re-export or re-compile it.")
    return maxdisp


def open_compiled(path: Path, provider: str = "auto") -> "Runtime | OpenVinoRuntime":
    """A .hbm on the runtime it was compiled for (its manifest's `runtime`; older files: ONNX Runtime)."""
    compiled = load_hbm(path)
    maxdisp = _maxdisp(compiled.manifest.get("maxdisp"), str(path))
    runtime = compiled.manifest.get("runtime", "ort")
    if runtime == "openvino":
        if not openvino_runtime.available():
            raise StereokitError(f"{path}: compiled for OpenVINO, which is not installed here; install it ({openvino_runtime.INSTALL}) "
                                 "or compile for ONNX Runtime (plain 'stereokit compile').")
        if provider not in ("auto", "cpu"):
            raise StereokitError(f"--provider {provider}: {path} is an OpenVINO model, which runs on the CPU here; use --provider auto or cpu.")
        return open_openvino(compiled.model, str(path), maxdisp)
    if runtime != "ort":
        raise StereokitError(f"{path}: compiled for the runtime {runtime!r}, which this stereokit cannot run.")
    return open_runtime_model("ort", compiled.model, str(path), maxdisp, provider)


def open_runtime_model(runtime: str, model: bytes, name: str, maxdisp: float, provider: str = "auto") -> "Runtime | OpenVinoRuntime":
    """One runtime's model, as a .hbm holds it (ONNX Runtime's integer graph or OpenVINO's blob), ready to run."""
    if runtime == "openvino":
        return open_openvino(model, name, maxdisp)
    session = _session(model, name, provider, integer_graph=True)
    h, w = _static_shape(session, name)
    return Runtime(session, h, w, maxdisp, "hbm")


def open_onnx(path: Path, maxdisp: object, provider: str = "auto") -> Runtime:
    maxdisp = _maxdisp(maxdisp, str(path))
    session = _session(str(path), str(path), provider)
    h, w = _static_shape(session, str(path))
    return Runtime(session, h, w, maxdisp, "onnx")

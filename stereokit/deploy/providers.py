"""Which ONNX Runtime execution provider runs a session: the fastest one this machine really has.

`onnxruntime-gpu` lists CUDA and TensorRT even where no GPU is visible; they are only chosen
automatically when torch sees a CUDA device too. `--provider` forces one, and a provider that is
not installed is refused with the list of those that are.
"""

from __future__ import annotations

import onnxruntime as ort

from stereokit.errors import StereokitError

NAMES = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider",
         "azure": "AzureExecutionProvider"}
AUTO_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def _gpu_visible() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001 - no torch CUDA runtime means no GPU for us
        return False


def short_name(provider: str) -> str:
    return next((k for k, v in NAMES.items() if v == provider), provider)


def choose_providers(requested: str = "auto") -> list[str]:
    """The provider list for a session: `auto`, or one of cpu/cuda/tensorrt (or a full ORT name)."""
    available = ort.get_available_providers()
    if requested == "auto":
        gpu = _gpu_visible()
        chosen = [p for p in AUTO_ORDER if p in available and (gpu or p == "CPUExecutionProvider")]
        return chosen or ["CPUExecutionProvider"]
    provider = NAMES.get(requested.lower(), requested)
    if provider not in available:
        names = ", ".join(short_name(p) for p in available)
        raise StereokitError(f"--provider: '{requested}' is not installed in this ONNX Runtime; installed: {names} (or auto).")
    # the CPU provider stays last so an op the GPU provider lacks still runs
    return [provider] + (["CPUExecutionProvider"] if provider != "CPUExecutionProvider" else [])


def make_session(model: bytes | str, requested: str = "auto") -> ort.InferenceSession:
    """One way to open a model everywhere (validate, infer, compile's checks and timing)."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model, options, providers=choose_providers(requested))

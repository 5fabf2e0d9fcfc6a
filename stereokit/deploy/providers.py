"""Which ONNX Runtime execution provider runs a session: the fastest one this machine really has.

`onnxruntime-gpu` lists CUDA and TensorRT even where no GPU is visible; they are only chosen
automatically when torch sees a CUDA device too. `--provider` forces one, and a provider that is
not installed is refused with the list of those that are.
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

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


def choose_providers(requested: str = "auto", integer_graph: bool = False) -> list[str]:
    """The provider list for a session: `auto`, or one of cpu/cuda/tensorrt (or a full ORT name).
    integer_graph: the compiled QLinear graph, whose integer ops (QLinearConv, QLinearAdd, ...) have
    kernels in the CPU provider only; auto never hands it to CUDA or TensorRT, which would run none
    of them and copy every tensor between the devices."""
    available = ort.get_available_providers()
    if requested == "auto":
        gpu = _gpu_visible() and not integer_graph
        chosen = [p for p in AUTO_ORDER if p in available and (gpu or p == "CPUExecutionProvider")]
        return chosen or ["CPUExecutionProvider"]
    provider = NAMES.get(requested.lower(), requested)
    if provider not in available:
        names = ", ".join(short_name(p) for p in available)
        raise StereokitError(f"--provider: '{requested}' is not installed in this ONNX Runtime; installed: {names} (or auto).")
    # the CPU provider stays last so an op the GPU provider lacks still runs
    return [provider] + (["CPUExecutionProvider"] if provider != "CPUExecutionProvider" else [])


def make_session(model: bytes | str, requested: str = "auto", integer_graph: bool = False,
                 profile_prefix: str | None = None) -> ort.InferenceSession:
    """One way to open a model everywhere (validate, infer, compile's checks and timing)."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return ort.InferenceSession(model, options, providers=choose_providers(requested, integer_graph))


def node_placement(model: bytes | str, requested: str, feed: dict[str, Any], integer_graph: bool = False) -> dict[str, dict[str, int]]:
    """Which provider ran how many nodes of each op type, from ONNX Runtime's own profile of one run
    (its per-node events name the provider): what really ran where, not the first provider asked for."""
    with tempfile.TemporaryDirectory() as tmp:
        session = make_session(model, requested, integer_graph, profile_prefix=str(Path(tmp) / "ort"))
        session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    counts: dict[str, Counter[str]] = {}
    seen: set[str] = set()
    for event in events:
        args = event.get("args", {})
        if event.get("cat") != "Node" or "provider" not in args or event.get("name") in seen:
            continue
        seen.add(event["name"])
        counts.setdefault(short_name(args["provider"]), Counter())[args.get("op_name", "?")] += 1
    return {provider: dict(sorted(c.items())) for provider, c in counts.items()}

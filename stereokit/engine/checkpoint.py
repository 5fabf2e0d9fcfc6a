"""Checkpoints: plain dicts of tensors and numbers, written atomically, read with weights_only=True.

Nothing in a checkpoint is pickled code, so a crafted file cannot run anything when loaded.
"""

from __future__ import annotations

import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from stereokit.errors import StereokitError
from stereokit.runs import atomic_torch_save

CHECKPOINT_FORMAT = 1


def rng_state() -> dict[str, Any]:
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": [py_version, list(py_state), py_gauss],
        "numpy": [torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    py_version, py_state, py_gauss = state["python"]
    random.setstate((int(py_version), tuple(int(v) for v in py_state), py_gauss))
    keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(gauss)))
    if "cuda" in state and torch.cuda.is_available():
        restore_cuda_rng(state["cuda"], torch.cuda.device_count())


def restore_cuda_rng(states: list[torch.Tensor], available: int) -> int:
    """Each visible GPU gets its saved generator state; a checkpoint from a host with more GPUs
    than this one restores the first `available` (set_rng_state_all would fail on the rest).
    Returns how many were restored."""
    count = min(len(states), available)
    for index in range(count):
        torch.cuda.set_rng_state(states[index], index)
    return count


def rank_rng_path(out_dir: Path, rank: int) -> Path:
    """Where a rank other than 0 keeps its own generator states beside RUN/<stage>/checkpoint.pt."""
    return Path(out_dir) / f"rng_rank{rank}.pt"


def save_rank_rng(out_dir: Path, rank: int) -> None:
    atomic_torch_save(rng_state(), rank_rng_path(out_dir, rank))


def load_rank_rng(out_dir: Path, rank: int) -> dict[str, Any] | None:
    """This rank's saved generator states, or None (a run resumed with more ranks than it had)."""
    path = rank_rng_path(out_dir, rank)
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - a damaged per-rank file only costs that rank its own stream
        return None


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    atomic_torch_save({"format": CHECKPOINT_FORMAT, **payload}, path)


def safe_torch_load(path: Path, what: str) -> Any:
    """torch.load with weights_only=True; a file that is damaged, truncated or holds more than
    tensors and plain values is one sentence calling it not a stereokit `what`."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a damaged file can fail in the unpickler in any way
        if isinstance(exc, MemoryError):
            raise
        reason = "it holds objects other than tensors and numbers, refused for safety" if isinstance(exc, pickle.UnpicklingError) else "it is damaged, truncated or not a PyTorch file"
        raise StereokitError(f"{path}: not a stereokit {what} ({reason}).") from None


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint safely; anything that is not one of ours is one clear sentence."""
    path = Path(path)
    if not path.is_file():
        raise StereokitError(f"{path}: checkpoint not found.")
    data = safe_torch_load(path, "checkpoint")
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT or "model" not in data:
        raise StereokitError(f"{path}: not a stereokit checkpoint (no model weights in the expected format).")
    return data


def load_model_weights(model: nn.Module, state: dict[str, torch.Tensor], source: Path) -> None:
    """Strict load; a mismatch names the keys, so a checkpoint of another config is obvious."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shape = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or shape:
        parts = []
        if shape:
            parts.append("shape differs for " + ", ".join(f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in shape[:3]))
        if missing:
            parts.append("missing " + ", ".join(missing[:3]))
        if unexpected:
            parts.append("unexpected " + ", ".join(unexpected[:3]))
        raise StereokitError(f"{source}: checkpoint does not fit this model config ({'; '.join(parts)}).")
    model.load_state_dict(state)

"""Models that ship inside the package: weights-only files (tensors and plain values, read with
weights_only=True), each checked against the sha256 in its manifest before it is loaded.

A weights file holds {"format": "stereokit-weights", "version", "model": ModelConfig as a dict,
"data": {"mean", "std", "rgb_input"}, "state_dict"}; the card beside the manifest says how it was made.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from torch import nn

from stereokit.config import DataConfig, ModelConfig, StereokitConfig
from stereokit.engine.checkpoint import load_model_weights, safe_torch_load
from stereokit.errors import StereokitError
from stereokit.runs import atomic_torch_save, atomic_write_text

WEIGHTS_FORMAT = "stereokit-weights"
WEIGHTS_VERSION = 1
PACKAGE_DIR = Path(__file__).parent
# the settings that make the network (the rest of ModelConfig only shapes its training)
TRAINING_ONLY = ("loss_weights",)


@dataclass
class Weights:
    name: str
    path: Path
    sha256: str
    model: ModelConfig
    data: DataConfig
    state_dict: dict[str, torch.Tensor]


def shipped_names() -> list[str]:
    return sorted(p.stem for p in PACKAGE_DIR.glob("*.json"))


def manifest(name: str) -> dict[str, Any]:
    path = PACKAGE_DIR / f"{name}.json"
    if not path.is_file():
        known = ", ".join(shipped_names()) or "none in this install"
        raise StereokitError(f"--model {name!r}: not a shipped model (known: {known}) nor an existing path.")
    return json.loads(path.read_text(encoding="utf-8"))


def sha256_of(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read_weights(path: Path, expected_sha256: str | None = None, name: str | None = None) -> Weights:
    """A weights file, refused in one sentence when damaged, truncated, of another format or hash."""
    path = Path(path)
    if not path.is_file():
        raise StereokitError(f"{path}: weights file not found" + (" (reinstall stereokit)." if expected_sha256 else "."))
    digest = sha256_of(path)
    if expected_sha256 is not None and digest != expected_sha256:
        raise StereokitError(f"{path}: the weights file is damaged or was changed (sha256 {digest[:12]} is not the manifest's "
                             f"{expected_sha256[:12]}); reinstall stereokit.")
    data = safe_torch_load(path, "weights file")
    if not isinstance(data, dict) or data.get("format") != WEIGHTS_FORMAT or "state_dict" not in data:
        raise StereokitError(f"{path}: not a stereokit weights file (make one with scripts/ship_weights.py from a run).")
    if data.get("version") != WEIGHTS_VERSION:
        raise StereokitError(f"{path}: weights format version {data.get('version')!r}, this stereokit reads {WEIGHTS_VERSION}.")
    try:
        model = ModelConfig.model_validate(data["model"])
        norm = DataConfig.model_validate(data["data"])
    except (ValidationError, KeyError, TypeError):
        raise StereokitError(f"{path}: its network settings are not a valid model config.") from None
    return Weights(name or path.stem, path, digest, model, norm, data["state_dict"])


def load_shipped(name: str = "shipped") -> Weights:
    entry = manifest(name)
    return read_weights(PACKAGE_DIR / entry["file"], entry["sha256"], name)


def resolve_weights(spec: str | Path) -> Weights:
    """A shipped model's name, or a weights file path."""
    text = str(spec)
    if (PACKAGE_DIR / f"{text}.json").is_file() and not Path(text).exists():
        return load_shipped(text)
    if Path(text).suffix == ".pt" or Path(text).exists():
        return read_weights(Path(text))
    manifest(text)  # raises the sentence naming the known models
    raise AssertionError("unreachable")


def network_differences(a: ModelConfig, b: ModelConfig) -> list[str]:
    """The network settings (model.*) in which two configs differ, as 'key=A vs B'."""
    one, two = a.model_dump(), b.model_dump()
    return [f"model.{k}={one[k]} vs {two[k]}" for k in one if k not in TRAINING_ONLY and one[k] != two[k]]


def init_from(model: nn.Module, cfg: StereokitConfig, spec: str | Path) -> Weights:
    """Load --init weights into a freshly built model of the run's config, after checking the networks match."""
    weights = resolve_weights(spec)
    differ = network_differences(weights.model, cfg.model)
    if differ:
        raise StereokitError(f"--init {spec}: its network differs from this run's config ({'; '.join(differ[:3])}); "
                             "use the same model settings (for the shipped model: --config configs/shipped.yaml).")
    load_model_weights(model, weights.state_dict, weights.path)
    return weights


def write_weights(out: Path, state_dict: dict[str, torch.Tensor], cfg: StereokitConfig, card: dict[str, Any]) -> str:
    """A weights file and its manifest (out.with_suffix('.json')); returns the file's sha256."""
    payload = {"format": WEIGHTS_FORMAT, "version": WEIGHTS_VERSION, "model": cfg.model.model_dump(mode="json"),
               "data": {"mean": cfg.data.mean, "std": cfg.data.std, "rgb_input": cfg.data.rgb_input},
               "state_dict": {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}}
    atomic_torch_save(payload, out)
    digest = sha256_of(out)
    atomic_write_text(out.with_suffix(".json"), json.dumps({"name": out.stem, "file": out.name, "sha256": digest,
                                                           "bytes": out.stat().st_size, **card}, indent=2) + "\n")
    return digest

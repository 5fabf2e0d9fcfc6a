"""The model of each stage, loaded from a run directory (shared by eval, calibrate, qat, export)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from stereokit.config import StereokitConfig
from stereokit.engine.checkpoint import load_checkpoint, load_model_weights
from stereokit.errors import StereokitError
from stereokit.models import build_stereonet
from stereokit.quant.convert import to_int_model
from stereokit.quant.prepare import QuantStereoNet, prepare_quant_model, set_observers
from stereokit.lineage import require_stage
from stereokit.runs import stage_dir

EVAL_STAGES = ("float", "calibration", "qat", "int_infer")
FLOAT_STAGES = ("float", "adapt")  # the stages that hold a float model (trained, or adapted without labels)
# The stage whose record and checkpoint each evaluable stage reads.
SOURCE = {"float": ("float", "best.pt"), "adapt": ("adapt", "best.pt"), "calibration": ("calibration", "checkpoint.pt"),
          "qat": ("qat", "best.pt"), "int_infer": ("qat", "best.pt")}


def float_model(cfg: StereokitConfig, checkpoint: Path) -> nn.Module:
    model = build_stereonet(cfg.model)
    load_model_weights(model, load_checkpoint(checkpoint)["model"], checkpoint)
    return model


def quant_model(cfg: StereokitConfig, checkpoint: Path) -> QuantStereoNet:
    """A prepared fake-quant model with the checkpoint's weights, scales and zero points."""
    torch.manual_seed(cfg.seed)
    model = prepare_quant_model(build_stereonet(cfg.model), cfg)
    # Per-channel observer buffers take their shape on the first forward; give them it, then load.
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, 64, 64), torch.zeros(1, 3, 64, 64))
    model.train()
    load_model_weights(model, load_checkpoint(checkpoint)["model"], checkpoint)
    return model


def float_source(run_dir: Path) -> str:
    """The stage whose model calibration starts from: float, or adapt in a run made by adaptation."""
    return "adapt" if not (stage_dir(run_dir, "float") / "stage.json").is_file() and (stage_dir(run_dir, "adapt") / "stage.json").is_file() else "float"


def source_checkpoint(run_dir: Path, stage: str) -> Path:
    """The checkpoint that stands for `stage` (what eval, export and infer load)."""
    source, name = SOURCE[stage]
    return stage_dir(run_dir, source) / name


def stage_checkpoint(run_dir: Path, stage: str) -> Path:
    """`stage`'s checkpoint once the whole chain behind it is verified."""
    if stage not in SOURCE:
        raise StereokitError(f"--stage: '{stage}' is not one of {', '.join(EVAL_STAGES)}.")
    require_stage(run_dir, SOURCE[stage][0])
    return source_checkpoint(run_dir, stage)


def load_stage_model(cfg: StereokitConfig, stage: str, checkpoint: Path) -> nn.Module:
    """float -> the float net; calibration/qat -> fake-quant, observers off; int_infer -> integer (CPU)."""
    if stage in FLOAT_STAGES:
        return float_model(cfg, checkpoint)
    model = quant_model(cfg, checkpoint)
    set_observers(model, False, weights_too=True)
    return to_int_model(model) if stage == "int_infer" else model

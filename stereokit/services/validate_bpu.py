"""`stereokit validate-bpu RUN/compile`: the compiled model over the test split (ONNX Runtime stands
in for the board): EPE/bad-k, and agreement with the torch fixed-point (int_infer) model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel

from stereokit.data.dataset import build_dataloader
from stereokit.deploy.runtime import open_compiled
from stereokit.engine.evaluate import torch_predictor
from stereokit.engine.metrics import StereoMetrics
from stereokit.errors import StereokitError
from stereokit.progress import progress_bar
from stereokit.runs import atomic_write_text, require_stage, run_config, stage_dir
from stereokit.services.stages import load_stage_model, stage_checkpoint


class ValidateResult(BaseModel):
    epe: float
    bad1: float
    bad3: float
    pixels: int
    images: int
    mean_abs_diff_px: float
    max_abs_diff_px: float
    frac_over_0_5px: float
    int_infer_epe: float
    passed: bool
    bar: dict[str, float]


def pad_to(x: torch.Tensor, height: int, width: int, name: str) -> torch.Tensor:
    h, w = x.shape[-2:]
    if h > height or w > width:
        raise StereokitError(f"{name}: a {w}x{h} test image is larger than the compiled input {width}x{height}; compile at a larger deploy.input_* size.")
    return F.pad(x, (0, width - w, 0, height - h), mode="replicate") if (h, w) != (height, width) else x


def run_validate(path: Path, show_progress: bool = True) -> ValidateResult:
    path = Path(path)
    run_dir = path.parent if path.name == "compile" else path
    require_stage(run_dir, "compile")
    cfg = run_config(run_dir)
    runtime = open_compiled(stage_dir(run_dir, "compile") / "model.hbm")
    int_model = load_stage_model(cfg, "int_infer", stage_checkpoint(run_dir, "int_infer"))
    reference = torch_predictor(int_model, cfg.model.maxdisp)
    loader = build_dataloader(cfg, "test", train=False, batch_size=1)
    compiled_metrics, reference_metrics = StereoMetrics(cfg.model.maxdisp), StereoMetrics(cfg.model.maxdisp)
    diffs: list[np.ndarray] = []
    with torch.no_grad(), progress_bar("validate-bpu", len(loader), enabled=show_progress) as advance:
        for batch in loader:
            h, w = batch["imgl"].shape[-2:]
            left = pad_to(batch["imgl"], runtime.height, runtime.width, str(path))
            right = pad_to(batch["imgr"], runtime.height, runtime.width, str(path))
            out = torch.from_numpy(runtime(left.numpy(), right.numpy()))[..., :h, :w]
            ref = reference(batch["imgl"], batch["imgr"])
            compiled_metrics.update(out, batch["disp"], batch["index"])
            reference_metrics.update(ref, batch["disp"], batch["index"])
            diffs.append((out - ref).abs().flatten().numpy())
            advance()
    if not diffs:
        raise StereokitError(f"{cfg.data.test_lmdb}: the test split is empty.")
    diff = np.concatenate(diffs)
    summary = compiled_metrics.summary()
    bar = {"mean_abs_diff_px": cfg.deploy.max_mean_abs_diff_px, "frac_over_0_5px": cfg.deploy.max_frac_over_0_5px}
    mean, frac = float(diff.mean()), float((diff > 0.5).mean())
    result = ValidateResult(
        epe=summary["epe"], bad1=summary["bad1"], bad3=summary["bad3"], pixels=summary["pixels"], images=summary["images"],
        mean_abs_diff_px=mean, max_abs_diff_px=float(diff.max()), frac_over_0_5px=frac,
        int_infer_epe=reference_metrics.summary()["epe"],
        passed=mean <= bar["mean_abs_diff_px"] and frac <= bar["frac_over_0_5px"], bar=bar,
    )
    atomic_write_text(stage_dir(run_dir, "compile") / "validate.json", json.dumps(result.model_dump(), indent=2))
    return result

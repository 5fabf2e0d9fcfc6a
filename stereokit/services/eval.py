"""`stereokit eval`: EPE, bad-1, bad-3 of a stage on the test split, with pictures and eval.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from pydantic import BaseModel

from stereokit.config import StereokitConfig
from stereokit.data.dataset import build_dataloader
from stereokit.engine.distributed import resolve_device
from stereokit.engine.evaluate import evaluate
from stereokit.engine.plots import write_panel
from stereokit.errors import StereokitError
from stereokit.runs import atomic_write_text, read_stage_record, run_config, stage_dir
from stereokit.models.inference import prepare_for_inference
from stereokit.services.stages import EVAL_STAGES, SOURCE, load_stage_model, stage_checkpoint

NUM_PICTURES = 4


class EvalResult(BaseModel):
    stage: str
    epe: float
    bad1: float
    bad3: float
    pixels: int
    images: int
    checkpoint: str
    out_dir: Path
    pictures: list[str]


def picture_writer(out_dir: Path, cfg: StereokitConfig, limit: int = NUM_PICTURES):
    """An on_batch callback that writes the first `limit` images as left | gt | prediction | error."""
    written: list[str] = []

    def on_batch(batch: dict[str, torch.Tensor], pred: torch.Tensor) -> None:
        for i in range(pred.shape[0]):
            if len(written) >= limit:
                return
            yuv = (batch["imgl"][i].permute(1, 2, 0).numpy() * cfg.data.std + cfg.data.mean).clip(0, 255).astype(np.uint8)
            # the same YUV whether it came from RGB or BGR: back to BGR for the picture
            bgr = cv2.cvtColor(yuv, cv2.COLOR_YUV2BGR)
            path = out_dir / f"sample_{int(batch['index'][i]):05d}.png"
            write_panel(path, bgr, batch["disp"][i, 0].numpy(), pred[i, 0].numpy(), cfg.model.maxdisp)
            written.append(str(path))

    return on_batch, written


def run_eval(run_dir: Path, stage: str = "float", checkpoint: Path | None = None, show_progress: bool = True) -> EvalResult:
    run_dir = Path(run_dir)
    if stage not in EVAL_STAGES:
        raise StereokitError(f"--stage: '{stage}' is not one of {', '.join(EVAL_STAGES)}.")
    if checkpoint is None:
        checkpoint = stage_checkpoint(run_dir, stage)
    cfg = run_config(run_dir)
    # PyTorch's integer kernels run on the CPU only.
    device = torch.device("cpu") if stage == "int_infer" else resolve_device(cfg.device)
    model = prepare_for_inference(load_stage_model(cfg, stage, Path(checkpoint)), device)
    out_dir = stage_dir(run_dir, stage) / "eval"
    out_dir.mkdir(parents=True, exist_ok=True)
    loader = build_dataloader(cfg, "test", train=False, batch_size=1)
    on_batch, pictures = picture_writer(out_dir, cfg)
    summary = evaluate(model, loader, cfg.model.maxdisp, device, show_progress, on_batch, description=f"eval {stage}")
    result = EvalResult(stage=stage, checkpoint=str(checkpoint), out_dir=out_dir, pictures=pictures, **summary)
    atomic_write_text(out_dir / "eval.json", json.dumps(result.model_dump(mode="json"), indent=2))
    return result


def run_eval_all(run_dir: Path, show_progress: bool = True) -> dict[str, EvalResult]:
    """Every stage that exists, float first; a missing stage is skipped, a damaged one refused."""
    results = {}
    for stage in EVAL_STAGES:
        source = SOURCE[stage][0]
        if read_stage_record(Path(run_dir), source) is None:
            continue
        results[stage] = run_eval(run_dir, stage, show_progress=show_progress)
    if not results:
        raise StereokitError(f"{run_dir}: no stage to evaluate; run 'stereokit train --stage float' first.")
    return results


def eval_json(result: EvalResult) -> dict[str, Any]:
    return {"epe": result.epe, "bad1": result.bad1, "bad3": result.bad3, "pixels": result.pixels}

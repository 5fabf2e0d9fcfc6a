"""What the stages that train (float, QAT) share: the stage directory, resume, the loaders, and the
fit that writes metrics.json and the stage record."""

from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel
from torch.utils.data import DataLoader

from stereokit.config import StereokitConfig, made_with_settings, stage_config_hash
from stereokit.data.dataset import build_dataloader, check_crop_fits
from stereokit.engine.checkpoint import load_checkpoint, load_model_weights
from stereokit.engine.distributed import DistInfo, barrier
from stereokit.engine.trainer import FitResult, LoopSettings, TrainingDiverged, TrainingInterrupted, fit
from stereokit.errors import StageError
from stereokit.lineage import clear_for_rerun, live_lock, stage_lock
from stereokit.runs import StageRecord, atomic_write_text, finish_stage, stage_dir, write_stage_record

EVAL_BATCH = 1


class TrainResult(BaseModel):
    run_dir: Path
    stage: str
    steps: int
    epochs: int
    best_epe: float | None
    val: dict[str, Any] | None
    outputs: list[str]
    world_size: int
    ranks_in_sync: bool
    moved_aside: list[str] = []
    notes: list[str] = []


def prepare_stage_dir(run_dir: Path, stage: str, resume: bool, force: bool, info: DistInfo) -> list[str]:
    """Refuse to overwrite a stage without --resume/--force; with --force, move it and every stage
    made from it aside into RUN/.stale/ (rank 0). Returns what was moved."""
    out = stage_dir(run_dir, stage)
    moved: list[str] = []
    if resume:
        if not (out / "checkpoint.pt").is_file():
            raise StageError(f"{out}: nothing to resume (no checkpoint.pt); run without --resume.")
        if info.is_main and live_lock(run_dir, stage):
            raise StageError(f"{out}: the {stage} stage is being made by another process right now; wait for it to finish.")
    elif info.is_main:
        moved = clear_for_rerun(run_dir, stage, force)
    barrier()
    return moved


def resume_state(out: Path, cfg: StereokitConfig) -> dict[str, Any]:
    """The stage's checkpoint, refused when another config wrote it."""
    state = load_checkpoint(out / "checkpoint.pt")
    if not made_with_settings(state.get("config_hash"), cfg, out.name):
        raise StageError(f"{out / 'checkpoint.pt'}: written with another config than this run's; resume with the run's config.yaml.")
    return state


def resumed_init(state: dict[str, Any], given: dict[str, str] | None, checkpoint: Path) -> dict[str, str] | None:
    """The weights a resumed run started from: its checkpoint's record of them (checkpoints written
    before it was kept have none: then what --init names); refused when --init names other weights."""
    started = state.get("init")
    if started and given and started.get("sha256") != given["sha256"]:
        raise StageError(f"{checkpoint}: this run started from {started.get('from')} (sha256 {str(started.get('sha256'))[:12]}), "
                         f"not --init {given['from']} ({given['sha256'][:12]}); resume without --init, or start a new run.")
    return started or given


def run_fit_stage(
    cfg: StereokitConfig,
    run_dir: Path,
    stage: str,
    model: torch.nn.Module,
    settings: LoopSettings,
    loaders: tuple[DataLoader, DataLoader],
    info: DistInfo,
    device: torch.device,
    resume: bool,
    record: StageRecord,
    extra_state: dict[str, Any] | None = None,
    on_step: Any = None,
    show_progress: bool = True,
    moved_aside: list[str] | None = None,
    resumed: dict[str, Any] | None = None,
    init_state: dict[str, torch.Tensor] | None = None,
) -> TrainResult:
    """Shared by float and QAT: resume, fit, metrics.json and the stage record.
    resumed: the checkpoint the caller already read and checked (else it is read here when resume is set);
    init_state: the weights training started from (what settings.init_weight blends in)."""
    out = stage_dir(run_dir, stage)
    train_loader, val_loader = loaders
    batch_size = train_loader.batch_size
    state = resumed if resumed is not None else (resume_state(out, cfg) if resume else None)
    if state is not None:
        load_model_weights(model, state["model"], out / "checkpoint.pt")
    record.details.update({"world_size": info.world_size, "device": str(device), "batch_size_per_process": batch_size,
                           "train_samples": len(train_loader.dataset), "val_samples": len(val_loader.dataset),
                           "selection_split": selection_split(cfg, len(val_loader.dataset))})
    extras = {"config_hash": stage_config_hash(cfg, stage), "stage": stage, "model_config": cfg.model.model_dump(), **(extra_state or {})}
    if "init" in record.details:  # so a resumed run's record still says which weights it started from
        extras["init"] = record.details["init"]
    try:
        with stage_lock(run_dir, stage) if info.is_main else nullcontext():
            if info.is_main:
                write_stage_record(run_dir, record)
            result: FitResult = fit(
                model, train_loader, val_loader, settings, out, info, device, cfg.model.maxdisp,
                cfg.model.loss_weights, resume=state, extra_state=lambda: extras, on_step=on_step,
                show_progress=show_progress, init_state=init_state,
            )
    except TrainingInterrupted:
        if info.is_main:
            record.status = "interrupted"
            write_stage_record(run_dir, record)
        raise
    except TrainingDiverged:
        if info.is_main:
            record.status = "failed"
            write_stage_record(run_dir, record)
        raise
    outputs = ["checkpoint.pt", "best.pt", "log.jsonl", "loss.png", "metrics.json"]
    metrics = {"steps": result.steps, "epochs": result.epochs, "best_epe": result.best_epe,
               "val": result.last_val, "world_size": info.world_size, "ranks_in_sync": result.ranks_in_sync}
    if info.is_main:
        atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2))
        finish_stage(run_dir, record, [out / name for name in outputs], metrics)
    barrier()
    return TrainResult(run_dir=run_dir, stage=stage, steps=result.steps, epochs=result.epochs, best_epe=result.best_epe,
                       val=result.last_val, outputs=[str(out / n) for n in outputs], world_size=info.world_size,
                       ranks_in_sync=result.ranks_in_sync, moved_aside=moved_aside or [])


def selection_split(cfg: StereokitConfig, count: int) -> str:
    """What chose best.pt, in words for the stage record (never the test split)."""
    if cfg.data.val_lmdb is not None:
        return f"val ({count} pairs of {cfg.data.val_lmdb})"
    return f"val ({count} training pairs held out, seed {cfg.seed}; not trained on)"


def training_loaders(cfg: StereokitConfig, batch_size: int) -> tuple[DataLoader, DataLoader]:
    """The training loader and the loader that selects best.pt; both are checked (data present,
    samples at least the crop) before a stage writes anything."""
    train_loader = build_dataloader(cfg, "train", train=True, batch_size=batch_size)
    val_loader = build_dataloader(cfg, "val", train=False, batch_size=EVAL_BATCH)
    check_crop_fits(train_loader.dataset, cfg.data.crop)
    return train_loader, val_loader

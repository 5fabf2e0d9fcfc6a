"""`stereokit train --stage float`: train the float model into RUN/float/ (single process or DDP)."""

from __future__ import annotations

import json
import os
from contextlib import nullcontext
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel
from rich.console import Console

from stereokit.config import StereokitConfig, config_hash
from torch.utils.data import DataLoader

from stereokit.data.dataset import build_dataloader, check_crop_fits
from stereokit.engine.checkpoint import load_checkpoint, load_model_weights
from stereokit.engine.distributed import DistInfo, barrier, init_distributed, shutdown_distributed
from stereokit.engine.trainer import (FitResult, LoopSettings, TrainingDiverged, TrainingInterrupted, amp_fallback_note,
                                      autocast_dtype, fit)
from stereokit.errors import StageError, StereokitError
from stereokit.models import build_stereonet
from stereokit.quant.prepare import check_precision_map
from stereokit.lineage import clear_for_rerun, live_lock, stage_lock
from stereokit.weights import init_from
from stereokit.runs import StageRecord, atomic_write_text, finish_stage, init_run, stage_dir, write_stage_record

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


def float_settings(cfg: StereokitConfig) -> LoopSettings:
    f = cfg.train.float
    return LoopSettings(
        epochs=f.epochs, max_steps=f.max_steps, lr=f.lr, weight_decay=f.weight_decay, schedule="cosine",
        warmup_epochs=f.warmup_epochs, min_lr_ratio=f.min_lr_ratio, val_every_epochs=f.val_every_epochs,
        log_every_steps=f.log_every_steps, checkpoint_every_steps=f.checkpoint_every_steps, amp=f.amp, channels_last=f.channels_last,
        compile=f.compile, grad_clip=f.grad_clip, residual_lr_scale=f.residual_lr_scale,
    )


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


def resume_state(out: Path, model: torch.nn.Module, cfg: StereokitConfig) -> dict[str, Any]:
    state = load_checkpoint(out / "checkpoint.pt")
    if state.get("config_hash") != config_hash(cfg):
        raise StageError(f"{out / 'checkpoint.pt'}: written with another config than this run's; resume with the run's config.yaml.")
    load_model_weights(model, state["model"], out / "checkpoint.pt")
    return state


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
) -> TrainResult:
    """Shared by float and QAT: resume, fit, metrics.json and the stage record."""
    out = stage_dir(run_dir, stage)
    train_loader, val_loader = loaders
    batch_size = train_loader.batch_size
    state = resume_state(out, model, cfg) if resume else None
    record.details.update({"world_size": info.world_size, "device": str(device), "batch_size_per_process": batch_size,
                           "train_samples": len(train_loader.dataset), "val_samples": len(val_loader.dataset),
                           "selection_split": selection_split(cfg, len(val_loader.dataset))})
    extras = {"config_hash": config_hash(cfg), "stage": stage, "model_config": cfg.model.model_dump(), **(extra_state or {})}
    try:
        with stage_lock(run_dir, stage) if info.is_main else nullcontext():
            if info.is_main:
                write_stage_record(run_dir, record)
            result: FitResult = fit(
                model, train_loader, val_loader, settings, out, info, device, cfg.model.maxdisp,
                cfg.model.loss_weights, resume=state, extra_state=lambda: extras, on_step=on_step,
                show_progress=show_progress,
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


def run_train_float(
    cfg: StereokitConfig, run_dir: Path, resume: bool = False, force: bool = False, show_progress: bool = True,
    init: str | None = None,
) -> TrainResult:
    """init: start from these weights (a shipped model's name or a weights .pt) instead of random ones."""
    info, device = init_distributed(cfg.device)
    try:
        loaders = training_loaders(cfg, cfg.train.float.batch_size)  # bad data is refused before anything is written
        if init is not None:
            init_from(build_stereonet(cfg.model), cfg, init)  # and --init weights of another network
        check_precision_map(build_stereonet(cfg.model), cfg)  # and a precision map the later stages could not use
        autocast_dtype(cfg.train.float.amp, device)  # and an amp setting this device cannot run
        if resume and (stage_dir(run_dir, "float") / "checkpoint.pt").is_file():
            resume_state(stage_dir(run_dir, "float"), build_stereonet(cfg.model), cfg)  # a damaged checkpoint, too
        moved = prepare_stage_dir(run_dir, "float", resume, force, info)
        if info.is_main:
            init_run(run_dir, cfg, reset=force and not resume)
        barrier()
        torch.manual_seed(cfg.seed)
        model = build_stereonet(cfg.model)
        record = StageRecord(stage="float", config_hash=config_hash(cfg))
        if init is not None and not resume:
            weights = init_from(model, cfg, init)
            record.details["init"] = {"from": str(init), "path": str(weights.path), "sha256": weights.sha256}
        if info.distributed and cfg.train.float.sync_bn and device.type == "cuda":
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        notes = [note] if (note := amp_fallback_note(cfg.train.float.amp, device)) else []
        if notes:
            record.details["amp_ran"] = "off"
            if info.is_main and show_progress:
                Console(stderr=True, markup=False, highlight=False).print(note)
        result = run_fit_stage(cfg, run_dir, "float", model, float_settings(cfg), loaders,
                               info, device, resume, record, show_progress=show_progress, moved_aside=moved)
        return result.model_copy(update={"notes": notes})
    finally:
        shutdown_distributed()


def launch_torchrun(argv: list[str], nproc: int) -> int:
    """Run this same command under torchrun's elastic agent with `nproc` processes on this node."""
    if nproc < 1:
        raise StereokitError(f"--nproc-per-node: {nproc} must be at least 1.")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "stereokit", *argv]
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    return subprocess.call(cmd, env=env)


def under_torchrun() -> bool:
    return "TORCHELASTIC_RUN_ID" in os.environ or "WORLD_SIZE" in os.environ

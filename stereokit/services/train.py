"""`stereokit train --stage float`: train the float model into RUN/float/ (single process or DDP)."""

from __future__ import annotations

from pathlib import Path

import torch
from rich.console import Console

from stereokit.config import StereokitConfig, stage_config_hash
from stereokit.engine.checkpoint import load_model_weights
from stereokit.engine.distributed import barrier, init_distributed, shutdown_distributed
from stereokit.engine.trainer import LoopSettings, amp_fallback_note, autocast_dtype
from stereokit.errors import StereokitError
from stereokit.models import build_stereonet
from stereokit.quant.prepare import check_precision_map
from stereokit.runs import StageRecord, init_run, stage_dir
from stereokit.services.fit_stage import (TrainResult, prepare_stage_dir, resume_state, resumed_init, run_fit_stage,
                                          training_loaders)
from stereokit.weights import PACKAGE_DIR, Weights, init_from, resolve_weights


def float_settings(cfg: StereokitConfig) -> LoopSettings:
    f = cfg.train.float
    return LoopSettings(
        epochs=f.epochs, max_steps=f.max_steps, lr=f.lr, weight_decay=f.weight_decay, schedule="cosine",
        warmup_epochs=f.warmup_epochs, min_lr_ratio=f.min_lr_ratio, val_every_epochs=f.val_every_epochs,
        log_every_steps=f.log_every_steps, checkpoint_every_steps=f.checkpoint_every_steps, amp=f.amp, channels_last=f.channels_last,
        compile=f.compile, grad_clip=f.grad_clip, residual_lr_scale=f.residual_lr_scale, ema_decay=f.ema_decay,
        init_weight=f.init_weight,
    )


def init_details(weights: Weights, init: str) -> dict[str, str]:
    """What the stage record and the checkpoint keep of --init: a shipped model by name and hash, a file by its path too."""
    details = {"from": str(init), "sha256": weights.sha256}
    if weights.path.parent != PACKAGE_DIR:  # not where this machine installed a shipped model
        details["path"] = str(weights.path)
    return details


def blend_weights(cfg: StereokitConfig, given: Weights | None, started_from: dict[str, str] | None) -> Weights | None:
    """The weights train.float.init_weight blends in: --init's, or on a resume without --init the ones
    its checkpoint names (refused when that file is gone or changed)."""
    if cfg.train.float.init_weight is None:
        return None
    if started_from is None:
        raise StereokitError("train.float.init_weight blends the trained weights with the ones training starts from: "
                             "give --init (a shipped model's name or a weights .pt).")
    weights = given if given is not None else resolve_weights(started_from.get("path", started_from["from"]))
    if weights.sha256 != started_from["sha256"]:
        raise StereokitError(f"train.float.init_weight: this run started from {started_from['from']} (sha256 "
                             f"{started_from['sha256'][:12]}), but {weights.path} is now sha256 {weights.sha256[:12]}; "
                             "resume with --init naming the original weights file.")
    return weights


def run_train_float(
    cfg: StereokitConfig, run_dir: Path, resume: bool = False, force: bool = False, show_progress: bool = True,
    init: str | None = None,
) -> TrainResult:
    """init: start from these weights (a shipped model's name or a weights .pt) instead of random ones."""
    info, device = init_distributed(cfg.device)
    try:
        loaders = training_loaders(cfg, cfg.train.float.batch_size)  # bad data is refused before anything is written
        # and --init weights of another network
        weights, started_from = None, None
        if init is not None:
            weights = init_from(build_stereonet(cfg.model), cfg, init)
            started_from = init_details(weights, init)
        check_precision_map(build_stereonet(cfg.model), cfg)  # and a precision map the later stages could not use
        autocast_dtype(cfg.train.float.amp, device)  # and an amp setting this device cannot run
        state = None
        checkpoint = stage_dir(run_dir, "float") / "checkpoint.pt"
        if resume and checkpoint.is_file():
            state = resume_state(checkpoint.parent, cfg)
            load_model_weights(build_stereonet(cfg.model), state["model"], checkpoint)  # a damaged checkpoint, too
            started_from = resumed_init(state, started_from, checkpoint)  # and --init of other weights
        blend_from = blend_weights(cfg, weights, started_from)  # and init_weight without the weights it blends in
        moved = prepare_stage_dir(run_dir, "float", resume, force, info)
        if info.is_main:
            init_run(run_dir, cfg, reset=force and not resume)
        barrier()
        torch.manual_seed(cfg.seed)
        model = build_stereonet(cfg.model)
        record = StageRecord(stage="float", config_hash=stage_config_hash(cfg, "float"))
        if started_from is not None:
            record.details["init"] = started_from
        if weights is not None and state is None:  # a resumed run's weights come from its checkpoint
            load_model_weights(model, weights.state_dict, weights.path)
        if info.distributed and cfg.train.float.sync_bn and device.type == "cuda":
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        notes = [note] if (note := amp_fallback_note(cfg.train.float.amp, device)) else []
        if notes:
            record.details["amp_ran"] = "off"
            if info.is_main and show_progress:
                Console(stderr=True, markup=False, highlight=False).print(note)
        result = run_fit_stage(cfg, run_dir, "float", model, float_settings(cfg), loaders, info, device, resume, record,
                               show_progress=show_progress, moved_aside=moved, resumed=state,
                               init_state=blend_from.state_dict if blend_from is not None else None)
        return result.model_copy(update={"notes": notes})
    finally:
        shutdown_distributed()

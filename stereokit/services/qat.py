"""`stereokit qat` (= `train --stage qat`): fake-quant fine-tuning from the calibrated model, through
the same training loop as the float stage."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from stereokit.config import StereokitConfig, stage_config_hash
from stereokit.engine.distributed import barrier, init_distributed, shutdown_distributed
from stereokit.engine.trainer import LoopSettings
from stereokit.errors import StageError
from stereokit.quant.prepare import freeze_bn, set_observers
from stereokit.lineage import config_for_stage, require_stage
from stereokit.runs import StageRecord, recorded_artifact, stage_dir, write_run_config
from stereokit.services.stages import quant_model
from stereokit.services.fit_stage import TrainResult, prepare_stage_dir, run_fit_stage, training_loaders


def qat_settings(cfg: StereokitConfig) -> LoopSettings:
    q = cfg.train.qat
    return LoopSettings(
        epochs=q.epochs, max_steps=q.max_steps, lr=q.lr, weight_decay=q.weight_decay, schedule="step",
        milestones_epochs=tuple(q.lr_milestones), gamma=q.gamma, val_every_epochs=q.val_every_epochs,
        log_every_steps=q.log_every_steps, checkpoint_every_steps=q.checkpoint_every_steps,
        residual_lr_scale=q.residual_lr_scale, channels_last=q.channels_last, compile=q.compile,
        validate_start=True,  # the calibrated model is a candidate: QAT keeps it when no step beats it on validation
    )


def qat_step_hook(cfg: StereokitConfig):
    """Before each step: BN statistics and activation observers freeze after their step counts."""
    q = cfg.train.qat
    done = {"bn": False, "observers": None}  # per process: a resumed run applies both again

    def on_step(model: nn.Module, step: int) -> None:
        if not done["bn"] and step >= q.freeze_bn_after_steps:
            freeze_bn(model)
            done["bn"] = True
        observing = step < q.freeze_observers_after_steps
        if done["observers"] is not observing:
            set_observers(model, observing)
            done["observers"] = observing

    return on_step


def run_qat(run_dir: Path, resume: bool = False, force: bool = False, show_progress: bool = True,
            overrides: list[str] | None = None) -> TrainResult:
    """overrides: --set values for this stage (train.qat.*), written to the run's config.yaml once it starts."""
    run_dir = Path(run_dir)
    if resume and overrides:
        raise StageError("--set with --resume: a resumed stage keeps the settings it started with; use --force to start QAT over with new ones.")
    cfg = config_for_stage(run_dir, "qat", overrides or [])
    info, device = init_distributed(cfg.device)
    try:
        source_record = require_stage(run_dir, "calibration")
        source = stage_dir(run_dir, "calibration") / "checkpoint.pt"
        source_art = recorded_artifact(run_dir, source_record, source)
        model = quant_model(cfg, source)  # a damaged checkpoint or missing data is refused before anything is written
        loaders = training_loaders(cfg, cfg.train.qat.batch_size)
        moved = prepare_stage_dir(run_dir, "qat", resume, force, info)
        if overrides and info.is_main:
            write_run_config(run_dir, cfg)
        barrier()
        record = StageRecord(stage="qat", config_hash=stage_config_hash(cfg, "qat"), inputs=[source_art])
        record.details.update({"int16_modules": cfg.quant.int16_modules, "float_modules": cfg.quant.float_modules})
        hook = qat_step_hook(cfg)
        result = run_fit_stage(cfg, run_dir, "qat", model, qat_settings(cfg), loaders, info, device,
                               resume, record, on_step=hook, show_progress=show_progress, moved_aside=moved)
        barrier()
        return result
    finally:
        shutdown_distributed()

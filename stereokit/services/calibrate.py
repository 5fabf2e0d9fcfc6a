"""`stereokit calibrate` (= `train --stage calibration`): observers over training batches, no
gradient step; the fake-quant model with frozen scales goes to RUN/calibration/."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from pydantic import BaseModel

from torch.utils.data import DataLoader

from stereokit.config import StereokitConfig, stage_config_hash
from stereokit.data.dataset import pairs_loader, build_dataloader, check_crop_fits
from stereokit.engine.checkpoint import save_checkpoint
from stereokit.engine.distributed import DistInfo, resolve_device
from stereokit.progress import progress_bar
from stereokit.quant.prepare import activation_scales, prepare_quant_model, quantized_layers, set_fake_quant, set_observers
from stereokit.lineage import config_for_stage, require_stage, stage_lock
from stereokit.runs import StageRecord, recorded_artifact, atomic_write_text, finish_stage, stage_dir, write_run_config, write_stage_record
from stereokit.services.stages import float_model, float_source
from stereokit.services.fit_stage import prepare_stage_dir


class CalibrateResult(BaseModel):
    run_dir: Path
    batches: int
    images: int
    observer: str
    quantized_convs: int
    activation_quantizers: int
    checkpoint: Path
    moved_aside: list[str] = []


def run_calibrate(run_dir: Path, force: bool = False, show_progress: bool = True, pairs: Path | None = None,
                  overrides: list[str] | None = None) -> CalibrateResult:
    """pairs: observe crops of these unlabeled rectified pairs (the deployment camera's) instead of the training split.
    overrides: --set values for this stage (train.calibration.*, quant.*), written to config.yaml once it starts."""
    run_dir = Path(run_dir)
    cfg = config_for_stage(run_dir, "calibration", overrides or [])
    origin = float_source(run_dir)  # float, or adapt in a run made by adaptation
    float_record = require_stage(run_dir, origin)
    source = stage_dir(run_dir, origin) / "best.pt"
    source_art = recorded_artifact(run_dir, float_record, source)
    # Everything that can refuse (checkpoint, data, crop) is read before anything is written.
    device = resolve_device(cfg.device)
    model = prepare_quant_model(float_model(cfg, source), cfg).to(device).eval()
    calib = cfg.train.calibration
    if pairs is not None:
        loader = pairs_loader(Path(pairs), cfg, calib.batch_size)
    else:
        loader = build_dataloader(cfg, "train", train=True, batch_size=calib.batch_size)
        check_crop_fits(loader.dataset, cfg.data.crop)
        if len(loader) == 0:
            loader = build_dataloader(cfg, "train", train=False, batch_size=calib.batch_size)
    moved = prepare_stage_dir(run_dir, "calibration", resume=False, force=force, info=DistInfo())
    if overrides:
        write_run_config(run_dir, cfg)
    out = stage_dir(run_dir, "calibration")
    record = StageRecord(stage="calibration", config_hash=stage_config_hash(cfg, "calibration"), inputs=[source_art])
    record.details["calibration_data"] = str(pairs) if pairs is not None else "the training split"
    with stage_lock(run_dir, "calibration"):
        write_stage_record(run_dir, record)
        return _calibrate(cfg, run_dir, out, model, loader, record, device, moved, show_progress)


def _calibrate(cfg: StereokitConfig, run_dir: Path, out: Path, model: torch.nn.Module, loader: DataLoader,
               record: StageRecord, device: torch.device, moved: list[str], show_progress: bool) -> CalibrateResult:
    # Observe float ranges first (fake-quant off), then freeze them and quantize.
    set_fake_quant(model, False)
    set_observers(model, True, weights_too=True)
    calib = cfg.train.calibration
    batches = images = epoch = 0
    with torch.no_grad(), progress_bar("calibration", calib.steps, enabled=show_progress) as advance:
        while batches < calib.steps:
            loader.sampler.set_epoch(epoch)
            loader.dataset.set_epoch(epoch)
            for batch in loader:
                model(batch["imgl"].to(device), batch["imgr"].to(device))
                batches += 1
                images += batch["imgl"].shape[0]
                advance()
                if batches >= calib.steps:
                    break
            epoch += 1
    set_observers(model, False, weights_too=True)
    set_fake_quant(model, True)
    scales = activation_scales(model)
    checkpoint = out / "checkpoint.pt"
    save_checkpoint(checkpoint, {"model": model.state_dict(), "config_hash": stage_config_hash(cfg, "calibration"), "stage": "calibration"})
    atomic_write_text(out / "scales.json", json.dumps(scales, indent=2))
    record.details.update({"observer": calib.observer, "percentile": calib.percentile, "activation_scales": scales,
                           "int16_modules": cfg.quant.int16_modules, "float_modules": cfg.quant.float_modules})
    metrics = {"batches": batches, "images": images}
    finish_stage(run_dir, record, [checkpoint, out / "scales.json"], metrics)
    return CalibrateResult(run_dir=run_dir, batches=batches, images=images, observer=calib.observer,
                           quantized_convs=len(quantized_layers(model)), activation_quantizers=len(scales),
                           checkpoint=checkpoint, moved_aside=moved)

"""`stereokit eval`: EPE, bad-1, bad-3 of a stage on the test split, or a real benchmark (Middlebury,
KITTI, ETH3D) scored with its own masks and metrics; pictures and eval.json either way."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from pydantic import BaseModel

from stereokit.config import StereokitConfig
from stereokit.data.benchmark import BenchmarkSample, read_benchmark
from stereokit.data.dataset import SceneFlowFolder, build_dataloader
from stereokit.engine.distributed import resolve_device
from stereokit.engine.evaluate import evaluate
from stereokit.engine.metrics import BenchmarkMetrics
from stereokit.engine.plots import write_panel
from stereokit.errors import StereokitError
from stereokit.paths import folder_to_write
from stereokit.progress import progress_bar
from stereokit.runs import atomic_write_text, read_stage_record, run_config, stage_dir
from stereokit.models.inference import prepare_for_inference
from stereokit.services.predictors import PairPredictor
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


class BenchmarkResult(BaseModel):
    dataset: str
    data_dir: Path
    model: str
    ran_on: str
    epe: float
    bad1: float
    bad2: float
    bad3: float
    d1_all: float
    pixels: int
    images: int
    pooled: dict[str, float]
    nonocc: dict[str, Any] | None
    per_image: dict[str, dict[str, float]]
    notes: list[str]
    out_dir: Path
    pictures: list[str]


def benchmark_json(result: BenchmarkResult) -> dict[str, Any]:
    keys = ("epe", "bad1", "bad2", "bad3", "d1_all", "pixels")
    payload: dict[str, Any] = {k: getattr(result, k) for k in keys}
    payload["pooled"] = result.pooled
    if result.nonocc is not None:
        payload["nonocc"] = {k: result.nonocc[k] for k in (*keys, "pooled")}
    return payload


def run_eval_benchmark(dataset: str, data_dir: Path, predictor: PairPredictor, out_dir: Path,
                       show_progress: bool = True) -> BenchmarkResult:
    """A real benchmark read in its own layout (no packing), scored with its own masks and metrics."""
    samples = load_benchmark_samples(dataset, data_dir)
    out_dir = folder_to_write(Path(out_dir), "--save-path")
    every, nonocc = BenchmarkMetrics(), BenchmarkMetrics()
    per_image: dict[str, dict[str, float]] = {}
    notes: list[str] = []
    pictures: list[str] = []
    with progress_bar(f"eval {dataset}", len(samples), enabled=show_progress) as advance:
        for sample in samples:
            pred, _ = predictor(sample.left, sample.right)
            per_image[sample.name] = every.update(pred, sample.disp, sample.valid)
            if sample.nonocc is not None:
                nonocc.update(pred, sample.disp, sample.nonocc)
            top = float(sample.disp[sample.valid].max()) if sample.valid.any() else 0.0
            if top > predictor.maxdisp:
                notes.append(f"{sample.name}: ground truth reaches {top:.0f} px, beyond the model's maxdisp {predictor.maxdisp:g} "
                             f"({(sample.disp[sample.valid] > predictor.maxdisp).mean():.1%} of its pixels); evaluate a downscaled copy or a model with a larger --max-disparity")
            path = out_dir / f"{sample.name}.png"
            write_panel(path, sample.left, np.where(sample.valid, sample.disp, 0), pred, max(predictor.maxdisp, top))
            pictures.append(str(path))
            advance()
    summary = every.summary()
    result = BenchmarkResult(dataset=dataset, data_dir=Path(data_dir), model=predictor.name, ran_on=predictor.ran_on,
                             nonocc=nonocc.summary() if nonocc.images else None, per_image=per_image, notes=notes,
                             out_dir=out_dir, pictures=pictures, **summary)
    atomic_write_text(out_dir / "eval.json", json.dumps(result.model_dump(mode="json"), indent=2))
    return result


def load_benchmark_samples(dataset: str, data_dir: Path) -> list[BenchmarkSample]:
    """The benchmark's samples; `sceneflow` reads a SceneFlow tree's test split the same way."""
    if dataset != "sceneflow":
        return read_benchmark(dataset, Path(data_dir))
    tree = SceneFlowFolder(Path(data_dir), "test")
    samples = []
    for i, entry in enumerate(tree.samples):
        raw = tree.raw(i)
        valid = np.isfinite(raw["disp"]) & (raw["disp"] > 0)
        samples.append(BenchmarkSample(Path(entry.left).stem if len(tree.samples) == 1 else f"{i:05d}", raw["imgl"], raw["imgr"],
                                       np.where(valid, raw["disp"], 0).astype(np.float32), valid, None))
    return samples

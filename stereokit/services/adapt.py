"""`stereokit train --stage adapt`: self-supervised adaptation of a model to the user's own rectified
pairs (no ground truth) into RUN/adapt/, a float stage the quantization flow takes like RUN/float/.

Adaptation is fragile (a model can collapse to a flat disparity, or swing with the learning rate),
so the loop is guarded: the photometric loss and the spread of the predicted disparities are
scored on fixed crops of every pair every `eval_every` steps; the weights with the best score are
kept; a score that jumps above the best by `jump` restores them and halves the LR; a map whose
disparity spread falls below `collapse_floor` of the starting model's is refused the same way and
never kept. The stage records every event.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel

from stereokit.config import StereokitConfig, stage_config_hash
from stereokit.data.pairs import find_pairs, read_pair
from stereokit.data.transforms import preprocess_image
from stereokit.engine.checkpoint import save_checkpoint
from stereokit.engine.photometric import self_supervised_loss
from stereokit.engine.plots import plot_loss_curves
from stereokit.errors import StereokitError
from stereokit.lineage import clear_for_rerun, stage_lock
from stereokit.models import build_stereonet
from stereokit.progress import progress_bar
from stereokit.runs import StageRecord, atomic_write_text, finish_stage, init_run, stage_dir, write_stage_record
from stereokit.weights import init_from, resolve_weights


class AdaptSettings(BaseModel):
    steps: int = 200
    lr: float = 1e-4  # bench_adapt on Motorcycle: 2e-5 left the model where it was in 60 steps, 1e-4 took bad-2 26.0 -> 21.1%
    crop: tuple[int, int] = (256, 512)
    smooth_weight: float = 0.1
    eval_every: int = 20
    jump: float = 0.5  # a score more than 50% above the best restores the best weights
    collapse_floor: float = 0.25  # disparity spread below a quarter of the starting model's: collapsed
    max_restores: int = 4


class AdaptResult(BaseModel):
    run_dir: Path
    pairs: int
    steps: int
    start_score: float
    best_score: float
    best_step: int
    restores: list[dict[str, float | int | str]]
    outputs: list[str]


def _crops(images: list[tuple[np.ndarray, np.ndarray]], crop: tuple[int, int]) -> tuple[int, int]:
    h = min(min(a.shape[0] for a, _ in images) // 32 * 32, crop[0])
    w = min(min(a.shape[1] for a, _ in images) // 32 * 32, crop[1])
    if h < 32 or w < 64:
        raise StereokitError(f"the pairs are too small to adapt on ({w}x{h} after rounding to multiples of 32); use larger images.")
    return h, w


def _batch(pair: tuple[np.ndarray, np.ndarray], top: int, left: int, size: tuple[int, int], cfg: StereokitConfig):  # type: ignore[no-untyped-def]
    window = (slice(top, top + size[0]), slice(left, left + size[1]))
    a, b = (np.ascontiguousarray(v[window]) for v in pair)
    raw = [torch.from_numpy(v[..., ::-1].copy()).permute(2, 0, 1)[None].float() / 255 for v in (a, b)]  # RGB in [0, 1]
    return preprocess_image(a, cfg.data), preprocess_image(b, cfg.data), raw[0], raw[1]


def _disparity(model: torch.nn.Module, left: torch.Tensor, right: torch.Tensor, maxdisp: int) -> torch.Tensor:
    out = model(left, right)[-1]
    return F.interpolate(out, size=left.shape[-2:], mode="bilinear", align_corners=False) * maxdisp


def run_adapt(cfg: StereokitConfig, run_dir: Path, init: str, pairs_dir: Path, settings: AdaptSettings = AdaptSettings(),
              force: bool = False, show_progress: bool = True) -> AdaptResult:
    pairs = find_pairs(Path(pairs_dir))
    images = [read_pair(l, r) for _, l, r in pairs]  # every pair read and checked before anything is written
    size = _crops(images, settings.crop)
    model = build_stereonet(cfg.model)
    weights = init_from(model, cfg, init)
    moved = clear_for_rerun(run_dir, "adapt", force, what="an adapted model")
    init_run(run_dir, cfg)
    out = stage_dir(run_dir, "adapt")
    record = StageRecord(stage="adapt", config_hash=stage_config_hash(cfg, "adapt"))
    record.details.update({"init": {"from": str(init), "sha256": weights.sha256}, "pairs": str(pairs_dir),
                           "pair_names": [n for n, _, _ in pairs], "settings": settings.model_dump(mode="json"), "moved_aside": moved})
    maxdisp = cfg.model.maxdisp
    # fixed centre crops of every pair: the score the guards compare
    fixed = [_batch(p, (p[0].shape[0] - size[0]) // 2, (p[0].shape[1] - size[1]) // 2, size, cfg) for p in images]

    rng = np.random.default_rng([cfg.seed, 0xADA])
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    guard = Guard(model, optimizer, settings, str(pairs_dir), *score(model, fixed, settings, maxdisp))
    with stage_lock(run_dir, "adapt"):
        write_stage_record(run_dir, record)
        try:
            _steps(model, optimizer, images, size, cfg, settings, rng, guard, fixed, show_progress)
        except StereokitError:
            record.status = "failed"
            write_stage_record(run_dir, record)
            raise
        save_checkpoint(out / "best.pt", {"model": guard.best_state, "step": guard.best_step, "stage": "adapt",
                                          "config_hash": stage_config_hash(cfg, "adapt"), "model_config": cfg.model.model_dump()})
        with open(out / "log.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(h) + "\n" for h in guard.history)
        plot_loss_curves(guard.history, out / "loss.png")  # train loss and the photometric score (its "val" curve)
        metrics = {"start_score": guard.start, "best_score": guard.best, "best_step": guard.best_step, "steps": settings.steps,
                   "restores": guard.restores}
        atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2))
        names = ["best.pt", "log.jsonl", "loss.png", "metrics.json"]
        finish_stage(run_dir, record, [out / n for n in names], metrics)
    return AdaptResult(run_dir=run_dir, pairs=len(pairs), steps=settings.steps, start_score=guard.start, best_score=guard.best,
                       best_step=guard.best_step, restores=guard.restores, outputs=[str(out / n) for n in names])


def score(model: torch.nn.Module, fixed: list, settings: AdaptSettings, maxdisp: int) -> tuple[float, float]:  # type: ignore[type-arg]
    """(photometric error, disparity spread in px) over the fixed crops."""
    model.eval()
    with torch.no_grad():
        losses, spreads = [], []
        for left, right, raw_l, raw_r in fixed:
            disp = _disparity(model, left, right, maxdisp)
            losses.append(float(self_supervised_loss(raw_l, raw_r, disp, settings.smooth_weight)[1]))
            spreads.append(float(disp.std()))
    model.train()
    return float(np.mean(losses)), float(np.mean(spreads))


class Guard:
    """The best weights so far, and what to do when a score jumps or the map collapses."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, settings: AdaptSettings, where: str,
                 start: float, start_spread: float) -> None:
        self.model, self.optimizer, self.settings, self.where = model, optimizer, settings, where
        self.start, self.start_spread = start, start_spread
        self.best, self.best_step = start, 0
        self.best_state = {k: v.clone() for k, v in model.state_dict().items()}
        self.history: list[dict] = [{"step": 0, "val": {"epe": start}, "spread": start_spread}]  # type: ignore[type-arg]
        self.restores: list[dict[str, float | int | str]] = []
        self.t0 = time.perf_counter()

    def check(self, step: int, value: float, spread: float) -> None:
        self.history.append({"step": step, "val": {"epe": value}, "spread": spread, "elapsed_s": round(time.perf_counter() - self.t0, 2)})
        if spread < self.settings.collapse_floor * self.start_spread:
            self.restore(step, f"the disparity spread fell to {spread:.2f} px (start {self.start_spread:.2f}): a collapsed map", spread)
        elif value > self.best * (1 + self.settings.jump):
            self.restore(step, f"the photometric score jumped to {value:.4f} (best {self.best:.4f})", value)
        elif value < self.best:
            self.best, self.best_step = value, step
            self.best_state = {k: v.clone() for k, v in self.model.state_dict().items()}

    def restore(self, step: int, why: str, value: float) -> None:
        self.model.load_state_dict(self.best_state)
        for group in self.optimizer.param_groups:
            group["lr"] *= 0.5
        self.restores.append({"step": step, "why": why, "value": value, "lr": self.optimizer.param_groups[0]["lr"]})
        if len(self.restores) > self.settings.max_restores:
            raise StereokitError(f"{self.where}: adaptation diverged {len(self.restores)} times ({why}); the model was not "
                                 "changed. Lower --lr or check that the pairs are rectified.", exit_code=1)


def _steps(model: torch.nn.Module, optimizer: torch.optim.Optimizer, images: list, size: tuple[int, int],  # type: ignore[type-arg]
           cfg: StereokitConfig, settings: AdaptSettings, rng: np.random.Generator, guard: Guard, fixed: list,  # type: ignore[type-arg]
           show_progress: bool) -> None:
    maxdisp = cfg.model.maxdisp
    model.train()
    with progress_bar("adapt", settings.steps, enabled=show_progress) as advance:
        for step in range(1, settings.steps + 1):
            pair = images[int(rng.integers(0, len(images)))]
            top = int(rng.integers(0, pair[0].shape[0] - size[0] + 1))
            left_x = int(rng.integers(0, pair[0].shape[1] - size[1] + 1))
            left, right, raw_l, raw_r = _batch(pair, top, left_x, size, cfg)
            loss, _ = self_supervised_loss(raw_l, raw_r, _disparity(model, left, right, maxdisp), settings.smooth_weight)
            if not torch.isfinite(loss):
                guard.restore(step, "the loss became non-finite", float("nan"))
                continue
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            guard.history.append({"step": step, "loss": float(loss.detach()), "lr": optimizer.param_groups[0]["lr"]})
            if step % settings.eval_every == 0 or step == settings.steps:
                guard.check(step, *score(model, fixed, settings, maxdisp))
            advance(1, status=f"photometric {guard.best:.4f}")


def adapt_config(config: StereokitConfig | None, init: str) -> StereokitConfig:
    """The run's config: the one given, or the defaults with the init model's network and normalisation."""
    if config is not None:
        return config
    weights = resolve_weights(init)
    base = StereokitConfig()
    return base.model_copy(update={"model": weights.model, "data": base.data.model_copy(
        update={"mean": weights.data.mean, "std": weights.data.std, "rgb_input": weights.data.rgb_input})})

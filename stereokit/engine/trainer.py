"""The one training loop, for the float and the QAT stage alike (single process or DDP).

It owns: the optimizer and schedule, the multi-scale loss, periodic and final checkpoints,
validation and best.pt, log.jsonl, interrupts (SIGINT/SIGTERM: a last checkpoint, then stop),
and the NaN/Inf guard (stop, keep the last good checkpoint). Everything a resumed run needs to
continue exactly is in checkpoint.pt.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Literal

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader

from stereokit.engine.checkpoint import load_rank_rng, rng_state, save_checkpoint, save_rank_rng, set_rng_state
from stereokit.engine.distributed import DistInfo, broadcast_flag, sync_buffers
from stereokit.engine.evaluate import evaluate
from stereokit.engine.optim import build_adam
from stereokit.engine.plots import plot_loss_curves
from stereokit.engine.schedules import StepDecay, WarmupCosine
from stereokit.engine.weight_blend import blended
from stereokit.errors import StereokitError
from stereokit.models.inference import conv2d_channels_last
from stereokit.models.loss import multiscale_loss
from stereokit.progress import progress_bar
from stereokit.runs import atomic_write_text


class TrainingInterrupted(StereokitError):
    """Ctrl-C or SIGTERM: the last checkpoint is written; `--resume` continues."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=130)


class TrainingDiverged(StereokitError):
    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=1)


@dataclass
class LoopSettings:
    """What the loop needs from a stage's config (float or qat), in one shape."""

    epochs: int
    max_steps: int | None
    lr: float
    weight_decay: float
    schedule: Literal["cosine", "step"]
    warmup_epochs: float = 0.0
    min_lr_ratio: float = 0.0
    milestones_epochs: tuple[int, ...] = ()
    gamma: float = 0.1
    val_every_epochs: int = 1
    log_every_steps: int = 20
    checkpoint_every_steps: int = 500
    amp: Literal["off", "bf16", "fp16"] = "off"
    channels_last: bool = False
    compile: bool = False
    grad_clip: float | None = None
    residual_lr_scale: float = 1.0
    validate_start: bool = False  # validate the starting weights too, so best.pt is never worse than them
    ema_decay: float | None = None  # an exponential moving average of the weights is what validation sees and best.pt keeps
    init_weight: float | None = None  # with fit's init_state: the blend of the start and the trained weights is what validation sees


@dataclass
class FitResult:
    steps: int
    epochs: int
    best_epe: float | None
    last_val: dict[str, Any] | None
    history: list[dict[str, Any]] = field(default_factory=list)
    ranks_in_sync: bool = True


def build_schedule(settings: LoopSettings, steps_per_epoch: int, total_steps: int) -> Callable[[int], float]:
    if settings.schedule == "cosine":
        return WarmupCosine(total_steps, int(round(settings.warmup_epochs * steps_per_epoch)), settings.min_lr_ratio)
    return StepDecay(tuple(m * steps_per_epoch for m in settings.milestones_epochs), settings.gamma)


@contextlib.contextmanager
def _interrupt_flag() -> Iterator[dict[str, bool]]:
    """Turn SIGINT/SIGTERM into a flag the loop checks between steps."""
    flag = {"set": False}

    def handler(signum: int, frame: Any) -> None:
        flag["set"] = True

    previous = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread: no signal handling
        pass
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _truncate_log(path: Path, step: int) -> list[dict[str, Any]]:
    """On resume: keep the log lines up to the checkpoint's step (later ones will be redone)."""
    if not path.exists():
        return []
    kept = []
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("step", 0) <= step:
            kept.append(entry)
    atomic_write_text(path, "".join(json.dumps(e) + "\n" for e in kept))
    return kept


def _weights_digest(model: nn.Module) -> float:
    with torch.no_grad():
        tensors = list(model.parameters()) + [b for b in model.buffers() if b.is_floating_point()]
        return float(sum(t.double().sum() + (t.double() ** 2).sum() for t in tensors))


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 convolutions run in hardware here. A CPU without AVX-512 BF16 or AMX emulates
    them: 6-8x slower than float32 (measured on an AVX2 EPYC, docs/performance.md)."""
    return device.type != "cpu" or bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def amp_fallback_note(amp: str, device: torch.device) -> str | None:
    """One line when `amp: bf16` will run in float32 instead, else None."""
    if amp == "bf16" and not native_bf16(device):
        return (f"amp: bf16 asked for, but this CPU ({torch.backends.cpu.get_cpu_capability()}) has no bf16 instructions "
                "and would emulate them several times slower than float32; training in float32.")
    return None


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of `train.*.amp` on `device` (None: float32). fp16 needs CUDA's GradScaler;
    bf16 on a CPU that would emulate it runs in float32 (amp_fallback_note says so)."""
    if amp == "off" or amp_fallback_note(amp, device):
        return None
    if amp == "fp16" and device.type != "cuda":
        raise StereokitError(f"train.float.amp=fp16 needs a CUDA device, this run uses {device}; use bf16 or off.")
    return torch.bfloat16 if amp == "bf16" else torch.float16


@dataclass
class _Optimization:
    """The optimizer, its LR schedule and the fp16 grad scaler: what a step changes besides the weights."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    amp_dtype: torch.dtype | None

    def state(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict()}

    def load(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])


def _build_optimization(model: nn.Module, settings: LoopSettings, steps_per_epoch: int, total_steps: int,
                        device: torch.device) -> _Optimization:
    optimizer = build_adam(model, settings.lr, settings.weight_decay, settings.residual_lr_scale)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, build_schedule(settings, steps_per_epoch, total_steps))
    amp_dtype = autocast_dtype(settings.amp, device)
    return _Optimization(optimizer, scheduler, torch.amp.GradScaler("cuda", enabled=amp_dtype is torch.float16), amp_dtype)


def _restore_rng(resume: dict[str, Any], out_dir: Path, info: DistInfo) -> None:
    """Each rank continues its own random streams; rank 0's are in the checkpoint, the others beside it."""
    own = resume["rng"] if info.is_main else load_rank_rng(out_dir, info.rank)
    if own is not None:
        set_rng_state(own)
    else:
        set_rng_state(resume["rng"])
        torch.manual_seed(torch.initial_seed() + info.rank)  # a new rank: its own stream, not rank 0's


def _start_epoch(loader: DataLoader, step: int, steps_per_epoch: int) -> int:
    """Position the sampler and the augmentations at `step` (mid-epoch after a resume); the epoch."""
    epoch, done_in_epoch = divmod(step, steps_per_epoch)
    if hasattr(loader.sampler, "set_epoch"):
        loader.sampler.set_epoch(epoch)
    if hasattr(loader.dataset, "set_epoch"):
        loader.dataset.set_epoch(epoch)
    if done_in_epoch and hasattr(loader.sampler, "skip_next"):
        loader.sampler.skip_next(done_in_epoch * loader.batch_size)
    return epoch


def _train_step(net: nn.Module, model: nn.Module, batch: dict[str, torch.Tensor], opt: _Optimization, settings: LoopSettings,
                device: torch.device, maxdisp: int, loss_weights: list[float], step: int, out_dir: Path) -> float:
    """One forward and backward on `batch` and one optimizer step; the loss. A NaN/Inf loss on any rank stops all."""
    imgl, imgr = batch["imgl"].to(device, non_blocking=True), batch["imgr"].to(device, non_blocking=True)
    if settings.channels_last:
        imgl = imgl.contiguous(memory_format=torch.channels_last)
        imgr = imgr.contiguous(memory_format=torch.channels_last)
    gt = batch["disp"].to(device, non_blocking=True)
    with torch.autocast(device.type, dtype=opt.amp_dtype, enabled=opt.amp_dtype is not None):
        outputs = net(imgl, imgr)
    loss = multiscale_loss([o.float() for o in outputs], gt, maxdisp, loss_weights)
    if broadcast_flag(not bool(torch.isfinite(loss)), device):
        raise TrainingDiverged(
            f"{out_dir}: the loss became {loss.item()} at step {step + 1}; stopped, the last good "
            "checkpoint is kept. Lower the learning rate or check the data, then --resume."
        )
    opt.optimizer.zero_grad(set_to_none=True)
    opt.scaler.scale(loss).backward()
    if settings.grad_clip:
        opt.scaler.unscale_(opt.optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
    opt.scaler.step(opt.optimizer)
    opt.scaler.update()
    opt.scheduler.step()
    return loss.item()


def _ranks_in_sync(model: nn.Module, info: DistInfo) -> bool:
    if not info.distributed:
        return True
    import torch.distributed as dist

    digests = [0.0] * info.world_size
    dist.all_gather_object(digests, _weights_digest(model))
    return all(d == digests[0] for d in digests)


@dataclass
class _Record:
    """Where a fit stands and what it writes: the step, the best validation EPE, log.jsonl, the
    checkpoints (rank 0 writes; the other ranks keep their random streams beside it)."""

    model: nn.Module
    opt: _Optimization
    out_dir: Path
    info: DistInfo
    steps_per_epoch: int
    extra_state: Callable[[], dict[str, Any]] | None
    ema: AveragedModel | None = None
    init_blend: tuple[dict[str, torch.Tensor], float] | None = None  # (the start's weights, init_weight)
    step: int = 0
    best_epe: float | None = None
    last_val: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    t0: float = field(default_factory=time.perf_counter)

    @property
    def log_path(self) -> Path:
        return self.out_dir / "log.jsonl"

    @property
    def produced(self) -> nn.Module:
        """The weights the stage hands on: the moving average when there is one, blended with the
        start's weights when asked (a fresh copy each call)."""
        own = self.ema.module if self.ema is not None else self.model
        return blended(own, *self.init_blend) if self.init_blend is not None else own

    def resume(self, state: dict[str, Any]) -> None:
        self.opt.load(state)
        if self.ema is not None and "ema" in state:
            self.ema.module.load_state_dict(state["ema"])
            self.ema.n_averaged.fill_(int(state["ema_averaged"]))
        self.step, self.best_epe = int(state["step"]), state.get("best_epe")
        _restore_rng(state, self.out_dir, self.info)
        if self.info.is_main:
            self.history = _truncate_log(self.log_path, self.step)

    def elapsed(self) -> float:
        return round(time.perf_counter() - self.t0, 3)

    def save(self, name: str, produced: nn.Module | None = None) -> None:
        """produced: the handed-on weights when the caller has them already (validate's blend, not made twice)."""
        if not self.info.is_main:
            if name == "checkpoint.pt":
                save_rank_rng(self.out_dir, self.info.rank)
            return
        # best.pt's "model" is what later stages load; checkpoint.pt's is what training continues from
        weights = (produced if produced is not None else self.produced) if name == "best.pt" else self.model
        payload = {"model": weights.state_dict(), **self.opt.state(), "step": self.step,
                   "epoch": self.step // self.steps_per_epoch, "best_epe": self.best_epe, "rng": rng_state()}
        if self.ema is not None and name == "checkpoint.pt":  # best.pt's "model" is the average already
            payload.update(ema=self.ema.module.state_dict(), ema_averaged=int(self.ema.n_averaged))
        payload.update(self.extra_state() if self.extra_state else {})
        save_checkpoint(self.out_dir / name, payload)

    def log(self, entry: dict[str, Any]) -> None:
        if self.info.is_main:
            self.history.append(entry)
            with open(self.log_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(entry) + "\n")

    def validate(self, val_loader: DataLoader, maxdisp: int, device: torch.device, epoch: int) -> None:
        produced = self.produced
        sync_buffers(produced)
        self.last_val = evaluate(produced, val_loader, maxdisp, device, show_progress=False)
        self.log({"step": self.step, "epoch": epoch, "val": self.last_val, "elapsed_s": self.elapsed()})
        if self.best_epe is None or self.last_val["epe"] < self.best_epe:
            self.best_epe = self.last_val["epe"]
            self.save("best.pt", produced)


def _step_network(model: nn.Module, settings: LoopSettings, info: DistInfo, device: torch.device) -> nn.Module:
    """What a training step calls: `model`, DDP-wrapped across ranks, compiled when asked; checkpoints
    and validation use the eager `model`."""
    net: nn.Module = model
    if info.distributed:
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    return torch.compile(net) if settings.compile else net


def fit(
    model: nn.Module,
    train_loader: DataLoader,
    val_loader: DataLoader | None,
    settings: LoopSettings,
    out_dir: Path,
    info: DistInfo,
    device: torch.device,
    maxdisp: int,
    loss_weights: list[float],
    resume: dict[str, Any] | None = None,
    extra_state: Callable[[], dict[str, Any]] | None = None,
    on_step: Callable[[nn.Module, int], None] | None = None,
    show_progress: bool = True,
    init_state: dict[str, torch.Tensor] | None = None,
) -> FitResult:
    """init_state: the weights training started from, which settings.init_weight blends in."""
    out_dir = Path(out_dir)
    model.to(device)
    if settings.channels_last:
        conv2d_channels_last(model)
    steps_per_epoch = len(train_loader)
    if steps_per_epoch == 0:
        raise StereokitError("the training split has fewer samples than one batch; lower the batch size or add data.")
    total_steps = settings.max_steps or settings.epochs * steps_per_epoch
    opt = _build_optimization(model, settings, steps_per_epoch, total_steps, device)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(settings.ema_decay), use_buffers=True) if settings.ema_decay else None
    if (settings.init_weight is None) != (init_state is None):
        raise ValueError("fit: init_weight and init_state come together (the weights to blend in and their share)")
    blend = (init_state, settings.init_weight) if init_state is not None else None
    rec = _Record(model, opt, out_dir, info, steps_per_epoch, extra_state, ema, blend)
    if resume is not None:
        rec.resume(resume)
    net = _step_network(model, settings, info, device)

    with _interrupt_flag() as interrupted, progress_bar(out_dir.name, total_steps, enabled=info.is_main and show_progress) as advance:
        advance(rec.step)
        if settings.validate_start and val_loader is not None and rec.step == 0:
            rec.validate(val_loader, maxdisp, device, -1)
        while rec.step < total_steps:
            epoch = _start_epoch(train_loader, rec.step, steps_per_epoch)
            net.train()
            for batch in train_loader:
                if on_step is not None:
                    on_step(model, rec.step)
                loss = _train_step(net, model, batch, opt, settings, device, maxdisp, loss_weights, rec.step, out_dir)
                if ema is not None:
                    ema.update_parameters(model)
                rec.step += 1
                advance(1, status=f"loss {loss:.3f}")
                if rec.step % settings.log_every_steps == 0 or rec.step == total_steps:
                    rec.log({"step": rec.step, "epoch": epoch, "loss": loss, "lr": opt.optimizer.param_groups[0]["lr"],
                             "elapsed_s": rec.elapsed()})
                if rec.step % settings.checkpoint_every_steps == 0:
                    rec.save("checkpoint.pt")
                if broadcast_flag(interrupted["set"], device):
                    rec.save("checkpoint.pt")
                    raise TrainingInterrupted(f"{out_dir}: interrupted at step {rec.step}; checkpoint written, continue with --resume.")
                if rec.step >= total_steps:
                    break
            finished_epochs = math.ceil(rec.step / steps_per_epoch)
            epoch_done = rec.step % steps_per_epoch == 0 or rec.step >= total_steps
            if val_loader is not None and epoch_done and (finished_epochs % settings.val_every_epochs == 0 or rec.step >= total_steps):
                rec.validate(val_loader, maxdisp, device, finished_epochs - 1)
            rec.save("checkpoint.pt")

    sync_buffers(model)
    if ema is not None:
        sync_buffers(ema.module)
    if info.is_main and (val_loader is None or not (out_dir / "best.pt").exists()):
        rec.save("best.pt")
    in_sync = _ranks_in_sync(model, info)
    if info.is_main:
        plot_loss_curves(rec.history, out_dir / "loss.png")
    return FitResult(rec.step, math.ceil(total_steps / steps_per_epoch), rec.best_epe, rec.last_val, rec.history, in_sync)

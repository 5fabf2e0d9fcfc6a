from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch

from stereokit.config import load_config
from stereokit.engine.checkpoint import load_checkpoint
from stereokit.engine.distributed import DistInfo
from stereokit.engine.evaluate import evaluate
from stereokit.engine.trainer import TrainingInterrupted, fit
from stereokit.models import build_stereonet
from stereokit.services.fit_stage import training_loaders
from stereokit.services.stages import float_model
from stereokit.services.train import float_settings
from tests.conftest import tiny_overrides

CPU = torch.device("cpu")


def _fit(cfg, out: Path, **kwargs):  # type: ignore[no-untyped-def]
    out.mkdir(exist_ok=True)
    torch.manual_seed(cfg.seed)
    model = build_stereonet(cfg.model)
    train_loader, val_loader = training_loaders(cfg, cfg.train.float.batch_size)
    result = fit(model, train_loader, val_loader, float_settings(cfg), out, DistInfo(), CPU, cfg.model.maxdisp,
                 cfg.model.loss_weights, show_progress=False, **kwargs)
    return model, val_loader, result


def _averaged(weights: list[dict[str, torch.Tensor]], decay: float) -> dict[str, torch.Tensor]:
    """The exponential moving average of the weights after each step, started at the first."""
    average = {k: v.clone() for k, v in weights[0].items() if v.is_floating_point()}
    for w in weights[1:]:
        for k in average:
            average[k] = decay * average[k] + (1 - decay) * w[k]
    return average


def test_the_moving_average_is_what_validation_sees_and_best_pt_keeps(tiny_data: Path, tmp_path: Path) -> None:
    decay = 0.6
    cfg = load_config(None, tiny_overrides(tiny_data, epochs=1, ema_decay=decay))  # 4 steps, one validation
    after_step: list[dict[str, torch.Tensor]] = []

    def record(model: torch.nn.Module, step: int) -> None:  # called before each step: the weights after the last
        if step:
            after_step.append({k: v.detach().clone() for k, v in model.state_dict().items()})

    model, val_loader, result = _fit(cfg, tmp_path, on_step=record)
    after_step.append({k: v.detach().clone() for k, v in model.state_dict().items()})
    assert result.steps == len(after_step) == 4
    expected = _averaged(after_step, decay)

    best = load_checkpoint(tmp_path / "best.pt")
    last = load_checkpoint(tmp_path / "checkpoint.pt")
    for key, value in expected.items():
        torch.testing.assert_close(best["model"][key], value, rtol=1e-5, atol=1e-6, msg=key)
        torch.testing.assert_close(last["ema"][key], value, rtol=1e-5, atol=1e-6, msg=key)
        torch.testing.assert_close(last["model"][key], after_step[-1][key], msg=key)  # training continues from these
    assert last["ema_averaged"] == 4
    assert any(not torch.allclose(best["model"][k], after_step[-1][k]) for k in expected)  # not the raw weights
    # the validation that chose best.pt ran on the average, and later stages load the average
    averaged_epe = evaluate(float_model(cfg, tmp_path / "best.pt"), val_loader, cfg.model.maxdisp, CPU, show_progress=False)["epe"]
    assert result.best_epe == pytest.approx(averaged_epe, rel=1e-5)


def test_a_resumed_run_continues_its_moving_average(tiny_data: Path, tmp_path: Path) -> None:
    cfg = load_config(None, tiny_overrides(tiny_data, epochs=2, ema_decay=0.7, checkpoint_every_steps=1000))
    _fit(cfg, tmp_path / "straight")

    def stop_at_five(model: torch.nn.Module, step: int) -> None:
        if step == 4:  # the fifth step runs, then the loop sees the signal, writes checkpoint.pt and stops
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(TrainingInterrupted):
        _fit(cfg, tmp_path / "stopped", on_step=stop_at_five)
    state = load_checkpoint(tmp_path / "stopped" / "checkpoint.pt")
    assert state["step"] == 5 and state["ema_averaged"] == 5
    torch.manual_seed(cfg.seed)
    model = build_stereonet(cfg.model)
    model.load_state_dict(state["model"])
    train_loader, val_loader = training_loaders(cfg, cfg.train.float.batch_size)
    fit(model, train_loader, val_loader, float_settings(cfg), tmp_path / "stopped", DistInfo(), CPU, cfg.model.maxdisp,
        cfg.model.loss_weights, resume=state, show_progress=False)

    straight = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")
    resumed = load_checkpoint(tmp_path / "stopped" / "checkpoint.pt")
    assert resumed["ema_averaged"] == straight["ema_averaged"] == 8
    for key, value in straight["ema"].items():
        if value.is_floating_point():
            torch.testing.assert_close(resumed["ema"][key], value, rtol=1e-4, atol=1e-5, msg=key)


def test_the_blend_with_the_start_is_what_validation_sees_and_best_pt_keeps(tiny_data: Path, tmp_path: Path) -> None:
    share = 0.7
    cfg = load_config(None, tiny_overrides(tiny_data, epochs=1, init_weight=share))  # 4 steps, one validation
    torch.manual_seed(5)
    start = {k: v.clone() for k, v in build_stereonet(cfg.model).state_dict().items()}
    model, val_loader, result = _fit(cfg, tmp_path, init_state=start)
    trained = model.state_dict()

    best = load_checkpoint(tmp_path / "best.pt")["model"]
    last = load_checkpoint(tmp_path / "checkpoint.pt")["model"]
    for key, value in trained.items():
        torch.testing.assert_close(last[key], value, msg=key)  # training continues from its own weights
        expected = share * start[key] + (1 - share) * value if value.is_floating_point() else value
        torch.testing.assert_close(best[key], expected, rtol=1e-5, atol=1e-6, msg=key)
    assert any(not torch.allclose(best[k], trained[k]) for k in trained if trained[k].is_floating_point())
    blended_epe = evaluate(float_model(cfg, tmp_path / "best.pt"), val_loader, cfg.model.maxdisp, CPU, show_progress=False)["epe"]
    assert result.best_epe == pytest.approx(blended_epe, rel=1e-5)

from __future__ import annotations

import math

from torch import nn

from stereokit.engine.optim import param_groups
from stereokit.engine.schedules import StepDecay, WarmupCosine
from stereokit.models.blocks import conv_bn


def test_warmup_then_cosine() -> None:
    f = WarmupCosine(total=110, warmup=10)
    assert math.isclose(f(0), 0.1) and math.isclose(f(9), 1.0)
    assert math.isclose(f(10), 1.0) and math.isclose(f(60), 0.5)
    assert f(110) < 1e-9
    assert all(f(s) >= f(s + 1) for s in range(10, 110))
    assert math.isclose(WarmupCosine(100, 0, floor=0.1)(100), 0.1)


def test_step_decay() -> None:
    f = StepDecay((20, 35), 0.1)
    assert f(19) == 1.0 and math.isclose(f(20), 0.1) and math.isclose(f(35), 0.01)


def test_weight_decay_on_conv_and_linear_weights_only() -> None:
    model = nn.Sequential(conv_bn(3, 4), nn.Conv2d(4, 1, 1, bias=True), nn.Flatten(), nn.Linear(4, 2))
    decay, no_decay = param_groups(model, 4e-5, 1e-3)
    assert decay["weight_decay"] == 4e-5 and no_decay["weight_decay"] == 0.0
    ids = lambda ps: {id(p) for p in ps}  # noqa: E731
    assert ids(decay["params"]) == {id(model[0][0].weight), id(model[1].weight), id(model[3].weight)}
    assert ids(no_decay["params"]) == {id(model[0][1].weight), id(model[0][1].bias), id(model[1].bias), id(model[3].bias)}


def test_refinement_residuals_learn_slower() -> None:
    from stereokit.config import load_config
    from stereokit.models import build_stereonet

    model = build_stereonet(load_config(None, ["model.maxdisp=64"]).model)
    groups = param_groups(model, 4e-5, 1e-3, residual_lr_scale=0.02)
    slow = {id(p) for g in groups if g["lr"] == 1e-3 * 0.02 for p in g["params"]}
    residual = {id(p) for name, p in model.named_parameters() if ".residual." in name}
    assert slow == residual and len(residual) == 2 * model.cfg.refine_levels
    assert sum(len(g["params"]) for g in groups) == sum(1 for p in model.parameters() if p.requires_grad)

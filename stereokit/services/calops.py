"""`stereokit calops`: the model's parameters and MACs, total and per module, at an input size."""

from __future__ import annotations

import torch
from pydantic import BaseModel

from stereokit.config import StereokitConfig
from stereokit.errors import ConfigError
from stereokit.models import build_stereonet
from stereokit.models.cost import count_costs


class ModuleRow(BaseModel):
    name: str
    params: int
    macs: int


class CalopsResult(BaseModel):
    params: int
    macs: int
    input: list[int]
    modules: list[ModuleRow]


def module_groups(refine_levels: int) -> list[str]:
    return ["neck", "head.cost_volume", "head.aggregation", "head.soft_argmin"] + [
        f"head.refine.{i}" for i in range(refine_levels)
    ]


def check_input_size(height: int, width: int, what: str = "--height/--width") -> None:
    if height <= 0 or width <= 0:
        raise ConfigError(f"{what}: input size {height}x{width} must be positive.")
    if height % 32 or width % 32:
        raise ConfigError(f"{what}: input size {height}x{width} must be a multiple of 32 (pad 540 to 544).")


def run_calops(cfg: StereokitConfig, height: int | None = None, width: int | None = None) -> CalopsResult:
    height = cfg.deploy.input_height if height is None else height
    width = cfg.deploy.input_width if width is None else width
    check_input_size(height, width)
    with torch.device("meta"):
        model = build_stereonet(cfg.model).eval()
        x = torch.empty(1, 3, height, width)
    rows = count_costs(model, (x, x), module_groups(cfg.model.refine_levels))
    return CalopsResult(
        params=sum(r.params for r in rows),
        macs=sum(r.macs for r in rows),
        input=[height, width],
        modules=[ModuleRow(name=r.name, params=r.params, macs=r.macs) for r in rows],
    )

"""`stereokit calops`: the model's parameters and MACs, total and per module, at an input size."""

from __future__ import annotations

import torch
from pydantic import BaseModel

from stereokit.config import StereokitConfig, deploy_size
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


def run_calops(cfg: StereokitConfig, height: int | None = None, width: int | None = None) -> CalopsResult:
    height, width = deploy_size(cfg.deploy, height, width)
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

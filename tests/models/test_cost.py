from __future__ import annotations

import torch
from torch import nn

from stereokit.config import StereokitConfig
from stereokit.models import build_stereonet
from stereokit.models.cost import count_costs
from stereokit.services.calops import module_groups, run_calops


def test_single_conv_macs_equal_the_hand_count() -> None:
    conv = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False))
    rows = count_costs(conv, (torch.zeros(1, 3, 32, 64),), ["0"])
    # output 8 x 16 x 32, each output element: 3 input channels x 3 x 3 kernel
    assert rows[0].macs == 8 * 16 * 32 * 3 * 3 * 3
    assert rows[0].params == 8 * 3 * 3 * 3


def test_grouped_and_3d_conv_macs() -> None:
    net = nn.Sequential(nn.Conv2d(8, 4, 1, groups=4, bias=False), nn.Conv3d(2, 2, 3, padding=1))
    rows = count_costs(net[0], (torch.zeros(1, 8, 5, 7),), [])
    assert rows[-1].name == "other" and rows[-1].macs == 4 * 5 * 7 * 2
    rows = count_costs(net[1], (torch.zeros(1, 2, 3, 4, 5),), [])
    assert rows[-1].macs == 2 * 3 * 4 * 5 * 2 * 27


def test_calops_params_and_totals(small_cfg: StereokitConfig) -> None:
    result = run_calops(small_cfg, 64, 128)
    model = build_stereonet(small_cfg.model)
    assert result.params == sum(p.numel() for p in model.parameters())
    assert result.params == sum(m.params for m in result.modules)
    assert result.macs == sum(m.macs for m in result.modules)
    assert [m.name for m in result.modules] == module_groups(small_cfg.model.refine_levels)
    assert result.input == [64, 128]


def test_macs_scale_with_area(small_cfg: StereokitConfig) -> None:
    small, big = run_calops(small_cfg, 64, 128), run_calops(small_cfg, 128, 256)
    assert big.macs == 4 * small.macs

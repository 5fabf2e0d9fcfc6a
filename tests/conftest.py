"""Shared fixtures: a small model config that trains and exports in seconds on a CPU."""

from __future__ import annotations

import pytest

from stereokit.config import StereokitConfig, load_config

SMALL_OVERRIDES = [
    "model.maxdisp=64",
    "model.out_channels=[8, 8, 16, 16, 16, 8]",
    "model.groups=8",
    "model.agg_channels=8",
    "model.agg_blocks=1",
    "model.refine_channels=8",
    "model.refine_dilations=[1, 2]",
]


@pytest.fixture
def small_cfg() -> StereokitConfig:
    return load_config(None, SMALL_OVERRIDES)

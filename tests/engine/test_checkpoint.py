from __future__ import annotations

import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from stereokit.engine.checkpoint import load_checkpoint, load_model_weights, rng_state, save_checkpoint, set_rng_state
from stereokit.errors import StereokitError
from stereokit.models import build_stereonet


def test_round_trip_with_rng_state(tmp_path: Path) -> None:
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    state = rng_state()
    want = (torch.rand(3), np.random.rand(3), random.random())
    save_checkpoint(tmp_path / "c.pt", {"model": {"w": torch.ones(2)}, "rng": state, "step": 7})
    loaded = load_checkpoint(tmp_path / "c.pt")
    assert loaded["step"] == 7 and torch.equal(loaded["model"]["w"], torch.ones(2))
    set_rng_state(loaded["rng"])
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(got[0], want[0]) and np.array_equal(got[1], want[1]) and got[2] == want[2]


class _Payload:
    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (Path.write_text, (Path(self.target), "pwned"))


def test_a_crafted_checkpoint_does_not_execute(tmp_path: Path) -> None:
    marker = tmp_path / "executed.txt"
    evil = tmp_path / "evil.pt"
    torch.save({"format": 1, "model": {}, "x": _Payload(str(marker))}, evil)
    with pytest.raises(StereokitError, match="refused for safety"):
        load_checkpoint(evil)
    assert not marker.exists()
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps(_Payload(str(marker))))
    with pytest.raises(StereokitError, match="not a stereokit checkpoint"):
        load_checkpoint(raw)
    assert not marker.exists()


def test_not_a_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(StereokitError, match="not a stereokit checkpoint"):
        load_checkpoint(tmp_path / "text.pt")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(StereokitError, match="no model weights"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(StereokitError, match="not found"):
        load_checkpoint(tmp_path / "none.pt")


def test_another_configs_weights_name_the_keys(small_cfg) -> None:
    from stereokit.config import load_config

    model = build_stereonet(small_cfg.model)
    other = build_stereonet(load_config(None, ["model.maxdisp=64", "model.refine_levels=2", "model.loss_weights=[1, 1, 1]"]).model)
    with pytest.raises(StereokitError, match=r"does not fit this model config \(shape differs for neck\.stem"):
        load_model_weights(model, other.state_dict(), Path("x.pt"))


def test_the_package_never_loads_without_weights_only() -> None:
    root = Path(__file__).resolve().parents[2] / "stereokit"
    offenders = []
    for path in root.rglob("*.py"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if "torch.load(" in line and "weights_only=True" not in line:
                offenders.append(f"{path}:{number}")
    assert offenders == []

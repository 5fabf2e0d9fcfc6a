"""Device choice under DDP and resuming on another host, read from the code's rules (no GPU here:
the rules take the GPU count as an argument, and the CPU path runs for real)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from stereokit.engine import checkpoint, distributed
from stereokit.errors import StereokitError


def test_an_explicit_gpu_index_is_the_first_of_the_nodes_ranks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert distributed.resolve_device("cuda:2", local_rank=1, local_world=4, device_count=8) == torch.device("cuda:3")
    assert distributed.resolve_device("cuda:2", local_rank=0, local_world=1, device_count=8) == torch.device("cuda:2")
    assert distributed.resolve_device("cuda", local_rank=3, local_world=4, device_count=4) == torch.device("cuda:3")
    with pytest.raises(StereokitError, match="would need cuda:4, but this machine has 4 GPU"):
        distributed.resolve_device("cuda:1", local_rank=3, local_world=4, device_count=4)


def test_cuda_generator_states_of_a_bigger_host_restore_what_fits(monkeypatch: pytest.MonkeyPatch) -> None:
    restored: list[int] = []
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, index: restored.append(index))
    states = [torch.zeros(8, dtype=torch.uint8) for _ in range(8)]
    assert checkpoint.restore_cuda_rng(states, 2) == 2 and restored == [0, 1]


def test_each_rank_keeps_its_own_generator_state(tmp_path: Path) -> None:
    torch.manual_seed(5)
    checkpoint.save_rank_rng(tmp_path, 1)
    expected = torch.rand(3)
    torch.manual_seed(99)
    state = checkpoint.load_rank_rng(tmp_path, 1)
    assert state is not None
    checkpoint.set_rng_state(state)
    assert torch.equal(torch.rand(3), expected)
    assert checkpoint.load_rank_rng(tmp_path, 2) is None

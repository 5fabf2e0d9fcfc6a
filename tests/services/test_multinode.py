"""Two "nodes" on one machine: two torchrun launches with --nnodes 2 (one process each) meet over gloo
on 127.0.0.1 and train one run as ranks 0 and 1; the second launch resumes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from stereokit.config import config_to_yaml, load_config
from tests.conftest import tiny_overrides


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _launch(config: Path, run: Path, port: int, extra: list[str]) -> list[subprocess.Popen[str]]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = []
    for node in (0, 1):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node-rank", str(node), "--nproc-per-node", "1",
               "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "sk-test",
               "-m", "stereokit", "train", "--config", str(config), "--run-dir", str(run), "--quiet", *extra]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
    return procs


@pytest.mark.slow
def test_two_nodes_train_one_run_and_resume(tiny_data: Path, tmp_path: Path) -> None:
    cfg = load_config(None, tiny_overrides(tiny_data, epochs=1, batch_size=2) + ["data.val_count=3"])
    config = tmp_path / "cfg.yaml"
    config.write_text(config_to_yaml(cfg))
    run = tmp_path / "run"
    for extra, steps in (([], 4), (["--resume"], 4)):
        procs = _launch(config, run, _free_port(), extra)
        outs = [p.communicate(timeout=600) for p in procs]
        for p, (out, err) in zip(procs, outs):
            assert p.returncode == 0, err[-3000:]
        metrics = json.loads((run / "float" / "metrics.json").read_text())
        assert metrics["world_size"] == 2 and metrics["ranks_in_sync"] is True and metrics["steps"] == steps
        # rank 0 wrote the stage; rank 1 (the second node) only its generator states
        assert sorted(p.name for p in (run / "float").glob("*.pt")) == ["best.pt", "checkpoint.pt", "rng_rank1.pt"]

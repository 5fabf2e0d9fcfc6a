"""Shared fixtures: a small model config that trains and exports in seconds on a CPU."""

from __future__ import annotations

import os

import pytest

from stereokit.config import StereokitConfig, load_config

SMALL_OVERRIDES = [
    "model.maxdisp=64",
    "model.out_channels=[8, 8, 16, 16, 16, 8]",
    "model.neck_blocks=[1, 1, 1, 1]",
    "model.groups=8",
    "model.agg_channels=8",
    "model.agg_blocks=1",
    "model.refine_channels=8",
    "model.refine_dilations=[1, 2]",
]


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist each worker gets its share of the cores (and so do the processes it starts):
    two workers with a thread per core each would oversubscribe the CPU and slow both."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        import torch

        from tests.cli import cores

        threads = max(1, cores() // workers)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)


@pytest.fixture
def small_cfg() -> StereokitConfig:
    return load_config(None, SMALL_OVERRIDES)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory):
    """Generated SceneFlow-format pairs (64x128, disparities below 24 px), packed into LMDB: 20 training
    pairs (16 trained on, 4 held out by `tiny_overrides` to select best.pt) and 3 test pairs."""
    from stereokit.services.pack import run_pack
    from stereokit.services.synth import run_synth

    root = tmp_path_factory.mktemp("tiny")
    run_synth(root / "SceneFlow", num_train=20, num_test=3, height=64, width=128, maxdisp=24, seed=11, show_progress=False)
    for split in ("train", "test"):
        run_pack(root / "SceneFlow", split, root / "lmdb", show_progress=False)
    return root


def tiny_overrides(root, **train) -> list[str]:
    """A config that trains the small model on `tiny_data` in seconds."""
    values = {"batch_size": 4, "epochs": 2, "warmup_epochs": 0, "log_every_steps": 1, "lr": 2e-3, **train}
    return SMALL_OVERRIDES + [
        "model.maxdisp=32",
        f"data.train_lmdb={root / 'lmdb' / 'train_lmdb'}",
        f"data.test_lmdb={root / 'lmdb' / 'test_lmdb'}",
        "data.crop=[64, 128]",
        "data.num_workers=0",
        "data.val_count=4",
        "device=cpu",
    ] + [f"train.float.{k}={v}" for k, v in values.items()]


def train_through_qat(cfg, run) -> None:  # type: ignore[no-untyped-def]
    """float -> calibration -> QAT for `cfg` into the run directory `run` (no progress bars)."""
    from stereokit.services.calibrate import run_calibrate
    from stereokit.services.qat import run_qat
    from stereokit.services.train import run_train_float

    run_train_float(cfg, run, show_progress=False)
    run_calibrate(run, show_progress=False)
    run_qat(run, show_progress=False)


def wait_for(predicate, timeout: float = 120.0) -> None:  # type: ignore[no-untyped-def]
    """Poll until `predicate()` holds (a subprocess reached a point) or the timeout passes."""
    import time

    deadline = time.time() + timeout
    while time.time() < deadline and not predicate():
        time.sleep(0.02)

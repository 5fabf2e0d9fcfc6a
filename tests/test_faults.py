"""Fault injection with real processes: SIGKILL during training and packing, a file-size limit
(the OS refusing to grow a file, as a full disk does) during a checkpoint write."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import lmdb
import pytest
import torch

from stereokit.config import config_to_yaml, load_config
from stereokit.data.lmdb_pack import META_KEY, partial_path
from stereokit.engine.checkpoint import load_checkpoint, save_checkpoint
from stereokit.services.pack import run_pack
from stereokit.services.synth import run_synth
from tests.conftest import tiny_overrides

STEREOKIT = str(Path(sys.executable).parent / "stereokit")


def _wait_for(predicate, timeout: float = 120.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and not predicate():
        time.sleep(0.02)


@pytest.mark.slow
def test_sigkill_during_training_then_resume_completes(tiny_data: Path, tmp_path: Path) -> None:
    cfg = load_config(None, tiny_overrides(tiny_data, epochs=4, checkpoint_every_steps=2))
    config_file = tmp_path / "cfg.yaml"
    config_file.write_text(config_to_yaml(cfg))
    run = tmp_path / "run"
    rng = random.Random(os.getpid())
    for attempt in range(2):  # two kills at random points, each followed by --resume
        args = [STEREOKIT, "train", "--config", str(config_file), "--run-dir", str(run), "--quiet"]
        if attempt:
            args.append("--resume")
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _wait_for(lambda: (run / "float" / "checkpoint.pt").exists() or proc.poll() is not None)
        time.sleep(rng.uniform(0.0, 1.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        assert load_checkpoint(run / "float" / "checkpoint.pt")["step"] >= 2  # the last periodic one is whole
        assert not list((run / "float").glob(".*.tmp"))
    done = subprocess.run([STEREOKIT, "train", "--config", str(config_file), "--run-dir", str(run), "--quiet", "--resume"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    final = load_checkpoint(run / "float" / "checkpoint.pt")
    assert final["step"] == 16
    steps = [int(line.split('"step": ')[1].split(",")[0]) for line in (run / "float" / "log.jsonl").read_text().splitlines() if '"loss"' in line]
    assert steps == list(range(1, 17))  # nothing logged twice, nothing missing


@pytest.mark.slow
def test_sigkill_during_pack_never_leaves_a_complete_looking_pack(tmp_path: Path) -> None:
    src = tmp_path / "SceneFlow"
    run_synth(src, 120, 0, 128, 256, 48, seed=2, workers=2, show_progress=False)
    out = tmp_path / "lmdb"
    proc = subprocess.Popen([STEREOKIT, "pack", "sceneflow", "--src-data-dir", str(src), "--split-name", "train",
                             "--target-data-dir", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    target = out / "train_lmdb"
    _wait_for(lambda: partial_path(target).exists() or target.exists() or proc.poll() is not None)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    if target.exists():  # it finished before the kill: then it must be whole
        env = lmdb.open(str(target), readonly=True, lock=False)
        with env.begin() as txn:
            assert txn.get(META_KEY) is not None
        env.close()
    else:
        assert partial_path(target).exists()
    result = run_pack(src, "train", out, show_progress=False, force=target.exists())
    assert result.complete and result.count == 120
    fresh = run_pack(src, "train", tmp_path / "fresh", show_progress=False)
    a = lmdb.open(str(result.target), readonly=True, lock=False)
    b = lmdb.open(str(fresh.target), readonly=True, lock=False)
    with a.begin() as ta, b.begin() as tb:
        assert dict(ta.cursor()) == dict(tb.cursor())
    a.close()
    b.close()


def test_a_full_disk_during_a_checkpoint_write_keeps_the_previous_one(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"model": {"w": torch.ones(4)}, "step": 1})
    before = path.read_bytes()
    # A child process whose files may not grow past 4 KiB: the kernel refuses the write (EFBIG),
    # as it refuses one on a full disk (ENOSPC); both surface as an OSError inside the write.
    code = f"""
import resource, signal, torch
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
from stereokit.engine.checkpoint import save_checkpoint
try:
    save_checkpoint({str(path)!r}, {{"model": {{"w": torch.zeros(100000)}}, "step": 2}})
except OSError as exc:
    print("refused", exc.errno)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "refused" in result.stdout, result.stderr
    assert path.read_bytes() == before
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temporary file left

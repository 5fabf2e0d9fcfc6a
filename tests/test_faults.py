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
from stereokit.data.lmdb_pack import META_KEY, PROGRESS_KEY, partial_path
from stereokit.errors import DataError
from stereokit.engine.checkpoint import load_checkpoint, save_checkpoint
from stereokit.services.pack import run_pack
from stereokit.services.synth import run_synth
from tests.cli import STEREOKIT
from tests.conftest import tiny_overrides, wait_for


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
        wait_for(lambda: (run / "float" / "checkpoint.pt").exists() or proc.poll() is not None)
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
def _records_in(path: Path) -> int:
    """Committed pair records in a (possibly still growing) pack, read without a lock."""
    try:
        env = lmdb.open(str(path), readonly=True, lock=False)
    except lmdb.Error:
        return 0
    with env.begin() as txn:
        count = sum(1 for key, _ in txn.cursor() if key not in (META_KEY, PROGRESS_KEY))
    env.close()
    return count


def test_sigkill_during_pack_never_leaves_a_complete_looking_pack(tmp_path: Path) -> None:
    src = tmp_path / "SceneFlow"
    run_synth(src, 120, 0, 128, 256, 48, seed=2, workers=2, show_progress=False)
    out = tmp_path / "lmdb"
    proc = subprocess.Popen([STEREOKIT, "pack", "sceneflow", "--src-data-dir", str(src), "--split-name", "train",
                             "--target-data-dir", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    target = out / "train_lmdb"
    partial = partial_path(target)
    # kill once some records are committed (or the pack finished first on a fast machine)
    wait_for(lambda: target.exists() or proc.poll() is not None or ((partial / "data.mdb").exists() and _records_in(partial) >= 1))
    committed = _records_in(partial) if partial.exists() else 0
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    fresh = run_pack(src, "train", tmp_path / "fresh", show_progress=False)
    if target.exists():
        # finished before the kill: then it is whole, and it is not packed again without --force
        assert not partial.exists()
        with pytest.raises(DataError, match="already exists"):
            run_pack(src, "train", out, show_progress=False)
        result_target = target
    else:
        # killed mid-way: only the .partial is there, and the next run resumes it, not restarts it
        assert partial.exists() and committed >= 1
        result = run_pack(src, "train", out, show_progress=False)
        assert result.complete and result.count == 120
        assert result.resumed_from >= committed and result.written == 120 - result.resumed_from
        assert not partial.exists()
        result_target = result.target
    a = lmdb.open(str(result_target), readonly=True, lock=False)
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

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from stereokit.config import config_to_yaml, load_config
from stereokit.data.dataset import SceneFlowLMDB, build_dataloader, validation_indices
from stereokit.data.synth import SceneOptions
from stereokit.engine.checkpoint import load_checkpoint
from stereokit.engine.evaluate import evaluate
from stereokit.engine.trainer import TrainingDiverged, autocast_dtype, native_bf16
from stereokit.errors import DataError, StereokitError
from stereokit.lineage import require_stage
from stereokit.runs import read_stage_record
from stereokit.services.calibrate import run_calibrate
from stereokit.services.demo import SMALL_MODEL
from stereokit.services.eval import run_eval
from stereokit.services.qat import run_qat
from stereokit.services.pack import run_pack
from stereokit.services.stages import float_model
from stereokit.services.synth import run_synth
from stereokit.services.train import run_train_float
from tests.cli import STEREOKIT
from tests.conftest import tiny_overrides, wait_for



def _tree_digest(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_float_training_writes_every_artifact(tiny_data: Path, tmp_path: Path) -> None:
    cfg = load_config(None, tiny_overrides(tiny_data))
    result = run_train_float(cfg, tmp_path / "run", show_progress=False)
    out = tmp_path / "run" / "float"
    assert result.steps == 8 and result.epochs == 2  # 16 pairs / batch 4 x 2 epochs
    for name in ("checkpoint.pt", "best.pt", "log.jsonl", "loss.png", "metrics.json", "stage.json"):
        assert (out / name).is_file(), name
    record = require_stage(tmp_path / "run", "float")
    assert record.metrics["steps"] == 8 and {o.path for o in record.outputs} >= {"float/best.pt", "float/loss.png"}
    lines = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in lines if "loss" in e] == list(range(1, 9))
    assert sum("val" in e for e in lines) == 2
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["step"] == 8 and {"optimizer", "scheduler", "scaler", "rng", "config_hash"} <= set(ckpt)
    assert ckpt["optimizer"]["param_groups"][0]["weight_decay"] == cfg.train.float.weight_decay
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_reports_on_the_test_split_and_writes_pictures(tiny_data: Path, tmp_path: Path) -> None:
    cfg = load_config(None, tiny_overrides(tiny_data, epochs=1))
    result = run_train_float(cfg, tmp_path, show_progress=False)
    assert result.val["images"] == 4  # the held-out validation pairs, not the 3 test pairs
    evaluated = run_eval(tmp_path, "float", checkpoint=tmp_path / "float" / "checkpoint.pt", show_progress=False)
    assert evaluated.images == 3 and evaluated.epe != pytest.approx(result.val["epe"], rel=1e-6)
    assert len(evaluated.pictures) == 3 and all(Path(p).is_file() for p in evaluated.pictures)
    assert json.loads((tmp_path / "float" / "eval" / "eval.json").read_text())["epe"] == evaluated.epe


def test_best_pt_is_chosen_on_held_out_training_pairs_and_training_never_reads_test(tiny_data: Path, tmp_path: Path) -> None:
    # the test split does not exist: training, model selection, calibration and QAT run all the same
    cfg = load_config(None, tiny_overrides(tiny_data, epochs=2) + [
        "data.test_lmdb=/nowhere/test_lmdb", "train.calibration.steps=2", "train.calibration.batch_size=4",
        "train.qat.batch_size=4", "train.qat.epochs=1"])
    result = run_train_float(cfg, tmp_path, show_progress=False)
    record = require_stage(tmp_path, "float")
    assert record.details["train_samples"] == 16 and record.details["val_samples"] == 4
    assert record.details["selection_split"].startswith("val (4 training pairs held out")
    held = validation_indices(20, cfg)
    val_loader = build_dataloader(cfg, "val", train=False, batch_size=1)
    train_loader = build_dataloader(cfg, "train", train=True, batch_size=4)
    assert sorted(int(b["index"]) for b in val_loader) == held
    assert not set(held) & {int(i) for b in train_loader for i in b["index"]}
    # best.pt is the checkpoint with the best validation EPE, and that EPE is the one recorded
    best = evaluate(float_model(cfg, tmp_path / "float" / "best.pt"), val_loader, cfg.model.maxdisp, torch.device("cpu"), False)
    logged = [json.loads(line)["val"]["epe"] for line in (tmp_path / "float" / "log.jsonl").read_text().splitlines() if '"val"' in line]
    assert best["epe"] == pytest.approx(result.best_epe, rel=1e-6) and result.best_epe == pytest.approx(min(logged), rel=1e-9)
    run_calibrate(tmp_path, show_progress=False)
    qat = run_qat(tmp_path, show_progress=False)
    assert require_stage(tmp_path, "qat").details["selection_split"].startswith("val (4") and qat.best_epe is not None
    with pytest.raises(DataError, match="nowhere/test_lmdb"):  # only the reports read it
        run_eval(tmp_path, "float", show_progress=False)


@pytest.mark.slow
def test_short_training_beats_a_constant_prediction(tmp_path: Path) -> None:
    """A few hundred CPU steps on generated scenes (textured slanted planes over the whole range)."""
    data = tmp_path / "data"
    run_synth(data / "SceneFlow", 64, 8, 128, 256, 48, seed=3, workers=2, show_progress=False,
              options=SceneOptions(min_objects=0, max_objects=0, background=(0.05, 0.9)))
    for split in ("train", "test"):
        run_pack(data / "SceneFlow", split, data / "lmdb", show_progress=False)
    # the small model the demo trained from scratch, with its settings: 16 crops of 64x128 (the cost of 4 whole
    # scenes), cost volume at 1/8. The recipe's 1/16 volume (D = 4 at maxdisp 64) with 4 whole scenes a step
    # learned by luck of the seed: 3-11 px across seeds (docs/performance.md), 9.4 against the constant's 10.4
    # on an AVX2 CPU.
    cfg = load_config(None, SMALL_MODEL + [
        f"data.train_lmdb={data / 'lmdb' / 'train_lmdb'}", f"data.test_lmdb={data / 'lmdb' / 'test_lmdb'}",
        "data.crop=[64, 128]", "data.num_workers=0", "device=cpu", "train.float.batch_size=16",
        "train.float.max_steps=320", "train.float.lr=2e-3", "train.float.warmup_epochs=1", "train.float.val_every_epochs=5",
        "train.float.residual_lr_scale=1.0",
    ])
    result = run_train_float(cfg, tmp_path / "run", show_progress=False)
    assert result.best_epe is not None  # chosen on the held-out validation pairs
    tested = run_eval(tmp_path / "run", "float", show_progress=False)
    train = SceneFlowLMDB(cfg.data.train_lmdb)
    constant = float(np.median(np.concatenate([train.raw(i)["disp"].ravel() for i in range(len(train))])))
    test = SceneFlowLMDB(cfg.data.test_lmdb)
    baseline = float(np.mean([np.abs(test.raw(i)["disp"] - constant).mean() for i in range(len(test))]))
    assert tested.epe < 0.75 * baseline, (tested.epe, result.best_epe, baseline)


@pytest.mark.parametrize("options", [["train.float.channels_last=true"], ["train.float.amp=bf16"],
                                     ["train.float.compile=true", "train.float.channels_last=true"]])
def test_throughput_options_train_with_a_finite_loss(tiny_data: Path, tmp_path: Path, options: list[str]) -> None:
    cfg = load_config(None, tiny_overrides(tiny_data, max_steps=3) + options)
    result = run_train_float(cfg, tmp_path / "run", show_progress=False)
    assert result.steps == 3
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / "float" / "log.jsonl").read_text().splitlines() if '"loss"' in line]
    assert len(losses) == 3 and all(math.isfinite(v) and v > 0 for v in losses)
    assert result.best_epe is not None and math.isfinite(result.best_epe)


def test_bf16_where_the_cpu_would_emulate_it_trains_in_float32_and_says_so(tiny_data: Path, tmp_path: Path) -> None:
    """Emulated bf16 is 6-8x slower than float32 (an AVX2 CPU); such a CPU trains in float32 with one line saying so."""
    cfg = load_config(None, tiny_overrides(tiny_data, max_steps=2) + ["train.float.amp=bf16"])
    result = run_train_float(cfg, tmp_path / "run", show_progress=False)
    record = read_stage_record(tmp_path / "run", "float")
    assert result.steps == 2
    if native_bf16(torch.device("cpu")):
        assert result.notes == [] and "amp_ran" not in record.details
        assert autocast_dtype("bf16", torch.device("cpu")) is torch.bfloat16
    else:
        assert len(result.notes) == 1 and "no bf16 instructions" in result.notes[0] and "float32" in result.notes[0]
        assert record.details["amp_ran"] == "off"
        assert autocast_dtype("bf16", torch.device("cpu")) is None


def test_the_same_config_trains_to_the_same_numbers(tiny_data: Path, tmp_path: Path) -> None:
    """Seeded data order, crops and initialisation: what makes the demo's fixed schedule reproducible."""
    cfg = load_config(None, tiny_overrides(tiny_data, epochs=1))
    first = run_train_float(cfg, tmp_path / "a", show_progress=False)
    second = run_train_float(cfg, tmp_path / "b", show_progress=False)
    assert first.best_epe == second.best_epe
    a = load_checkpoint(tmp_path / "a" / "float" / "best.pt")["model"]
    b = load_checkpoint(tmp_path / "b" / "float" / "best.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_after_sigterm_equals_an_uninterrupted_run(tiny_data: Path, tmp_path: Path) -> None:
    overrides = tiny_overrides(tiny_data, epochs=4, checkpoint_every_steps=1000)
    cfg = load_config(None, overrides)
    config_file = tmp_path / "cfg.yaml"
    config_file.write_text(config_to_yaml(cfg))
    run = tmp_path / "interrupted"
    proc = subprocess.Popen([STEREOKIT, "train", "--config", str(config_file), "--run-dir", str(run), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = run / "float" / "log.jsonl"
    wait_for(lambda: log.exists() and log.read_text().count('"loss"') >= 5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "continue with --resume" in err and "Traceback" not in err
    assert read_stage_record(run, "float").status == "interrupted"
    stopped_at = load_checkpoint(run / "float" / "checkpoint.pt")["step"]
    assert 5 <= stopped_at < 16

    resumed = run_train_float(cfg, run, resume=True, show_progress=False)
    straight = run_train_float(cfg, tmp_path / "straight", show_progress=False)
    assert resumed.steps == straight.steps == 16
    a = load_checkpoint(run / "float" / "checkpoint.pt")["model"]
    b = load_checkpoint(tmp_path / "straight" / "float" / "checkpoint.pt")["model"]
    for key in b:
        assert torch.allclose(a[key].float(), b[key].float(), atol=1e-5, rtol=1e-4), key
    steps = [json.loads(line)["step"] for line in log.read_text().splitlines() if '"loss"' in line]
    assert steps == list(range(1, 17))


@pytest.mark.slow
def test_two_process_ddp_through_torchrun(tiny_data: Path, tmp_path: Path) -> None:
    cfg = load_config(None, tiny_overrides(tiny_data, epochs=2, batch_size=2) + ["data.val_count=3"])
    config_file = tmp_path / "cfg.yaml"
    config_file.write_text(config_to_yaml(cfg))
    run = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([STEREOKIT, "train", "--config", str(config_file), "--run-dir", str(run), "--quiet",
                           "--nproc-per-node", "2"], capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((run / "float" / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["ranks_in_sync"] is True
    assert metrics["steps"] == 8  # 17 pairs over 2 ranks at 2 per rank: 4 steps an epoch
    # rank 0 writes the checkpoint; rank 1 only its own generator states beside it
    assert sorted(p.name for p in (run / "float").glob("*.pt")) == ["best.pt", "checkpoint.pt", "rng_rank1.pt"]
    # 3 validation pairs over 2 ranks: the sampler pads one; the reduction must count it once
    val_loader = build_dataloader(cfg, "val", train=False, batch_size=1)
    single = evaluate(float_model(cfg, run / "float" / "checkpoint.pt"), val_loader, cfg.model.maxdisp, torch.device("cpu"), False)
    assert metrics["val"]["images"] == single["images"] == 3
    assert metrics["val"]["epe"] == pytest.approx(single["epe"], rel=1e-5)


def test_a_diverging_run_stops_and_keeps_the_last_good_checkpoint(tiny_data: Path, tmp_path: Path) -> None:
    cfg = load_config(None, tiny_overrides(tiny_data, lr=1e12, checkpoint_every_steps=1, epochs=3))
    with pytest.raises(TrainingDiverged, match="the loss became"):
        run_train_float(cfg, tmp_path, show_progress=False)
    assert read_stage_record(tmp_path, "float").status == "failed"
    ckpt = load_checkpoint(tmp_path / "float" / "checkpoint.pt")
    assert ckpt["step"] >= 1


def test_refuses_to_overwrite_a_finished_stage(tiny_data: Path, tmp_path: Path) -> None:
    cfg = load_config(None, tiny_overrides(tiny_data, epochs=1))
    run_train_float(cfg, tmp_path, show_progress=False)
    before = _tree_digest(tmp_path)
    with pytest.raises(StereokitError, match="already here .finished.; pass --resume"):
        run_train_float(cfg, tmp_path, show_progress=False)
    assert _tree_digest(tmp_path) == before
    again = run_train_float(cfg, tmp_path, force=True, show_progress=False)
    assert again.steps == 4


def test_bad_inputs(tiny_data: Path, tmp_path: Path) -> None:
    missing = load_config(None, tiny_overrides(tiny_data) + [f"data.train_lmdb={tmp_path / 'nope_lmdb'}"])
    with pytest.raises(StereokitError, match=r"nope_lmdb: LMDB not found; run 'stereokit pack sceneflow' first"):
        run_train_float(missing, tmp_path / "a", show_progress=False)
    with pytest.raises(StereokitError, match="nothing to resume"):
        run_train_float(load_config(None, tiny_overrides(tiny_data)), tmp_path / "b", resume=True, show_progress=False)
    with pytest.raises(StereokitError, match="no float stage here; run 'stereokit train --stage float --run-dir .*' first"):
        run_eval(tmp_path / "c", "float", show_progress=False)


def test_a_resumed_run_keeps_the_weights_it_started_from_and_refuses_others(tiny_data: Path, tmp_path: Path) -> None:
    from stereokit.models import build_stereonet
    from stereokit.weights import write_weights

    cfg = load_config(None, tiny_overrides(tiny_data, epochs=1))
    starts = {}
    for seed in (1, 2):
        torch.manual_seed(seed)
        starts[seed] = write_weights(tmp_path / f"start{seed}.pt", build_stereonet(cfg.model).state_dict(), cfg, {})
    run = tmp_path / "run"
    run_train_float(cfg, run, show_progress=False, init=str(tmp_path / "start1.pt"))
    assert load_checkpoint(run / "float" / "checkpoint.pt")["init"]["sha256"] == starts[1]

    run_train_float(cfg, run, resume=True, show_progress=False)  # no --init: the checkpoint says where it started
    assert read_stage_record(run, "float").details["init"]["sha256"] == starts[1]
    before = _tree_digest(run)
    with pytest.raises(StereokitError, match=r"this run started from .*start1\.pt.* not --init .*start2\.pt"):
        run_train_float(cfg, run, resume=True, show_progress=False, init=str(tmp_path / "start2.pt"))
    assert _tree_digest(run) == before


def test_init_weight_needs_the_weights_it_blends_in(tiny_data: Path, tmp_path: Path) -> None:
    from stereokit.models import build_stereonet
    from stereokit.weights import write_weights

    cfg = load_config(None, tiny_overrides(tiny_data, epochs=1, init_weight=0.5))
    with pytest.raises(StereokitError, match="train.float.init_weight blends .* give --init"):
        run_train_float(cfg, tmp_path / "none", show_progress=False)
    assert not (tmp_path / "none").exists()

    torch.manual_seed(3)
    start = build_stereonet(cfg.model).state_dict()
    write_weights(tmp_path / "start.pt", start, cfg, {})
    run = tmp_path / "run"
    run_train_float(cfg, run, show_progress=False, init=str(tmp_path / "start.pt"))
    raw = load_checkpoint(run / "float" / "checkpoint.pt")["model"]
    best = load_checkpoint(run / "float" / "best.pt")["model"]
    key = next(k for k, v in raw.items() if v.is_floating_point() and not torch.equal(v, start[k]))
    torch.testing.assert_close(best[key], 0.5 * start[key] + 0.5 * raw[key])

    run_train_float(cfg, run, resume=True, show_progress=False)  # no --init: the weights its checkpoint names
    torch.manual_seed(4)
    write_weights(tmp_path / "start.pt", build_stereonet(cfg.model).state_dict(), cfg, {})  # the file changed since
    before = _tree_digest(run)
    with pytest.raises(StereokitError, match=r"init_weight: this run started from .*start\.pt.* resume with --init"):
        run_train_float(cfg, run, resume=True, show_progress=False)
    assert _tree_digest(run) == before

from __future__ import annotations

import json
import math
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import torch

from stereokit.config import load_config
from stereokit.engine.checkpoint import load_checkpoint
from stereokit.errors import StereokitError
from stereokit.lineage import require_stage
from stereokit.runs import read_stage_record
from stereokit.services.calibrate import run_calibrate
from stereokit.services.eval import run_eval, run_eval_all
from stereokit.services.qat import run_qat
from tests.cli import STEREOKIT
from tests.conftest import tiny_overrides, train_through_qat, wait_for

QUANT = ["train.calibration.steps=4", "train.calibration.batch_size=4", "train.qat.batch_size=4", "train.qat.epochs=4",
         "train.qat.lr=1e-4", "train.qat.lr_milestones=[1]", "train.qat.log_every_steps=1"]


@pytest.fixture(scope="module")
def quant_run(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """float (6 epochs) -> calibration -> QAT (4 epochs) on the tiny data."""
    run = tmp_path_factory.mktemp("qrun") / "run"
    cfg = load_config(None, tiny_overrides(tiny_data, epochs=6) + QUANT)
    train_through_qat(cfg, run)
    return run


def test_every_stage_is_recorded_with_its_parent(quant_run: Path) -> None:
    calibration = require_stage(quant_run, "calibration")
    float_best = require_stage(quant_run, "float").outputs
    assert calibration.inputs[0].path == "float/best.pt"
    assert calibration.inputs[0].sha256 == next(o.sha256 for o in float_best if o.path == "float/best.pt")
    scales = calibration.details["activation_scales"]
    assert scales["quant"]["quant_max"] == 255 and scales["model.head.soft_argmin.softmax"]["quant_max"] == 32767
    assert scales["model.head.refine.0.add"]["quant_min"] == -32768 and scales["model.head.refine.0.blocks.0.add"]["quant_max"] == 255
    assert calibration.metrics == {"batches": 4, "images": 16}
    qat = require_stage(quant_run, "qat")
    assert qat.inputs[0].path == "calibration/checkpoint.pt" and qat.metrics["steps"] == 16


def test_quantized_stages_stay_close_to_float(quant_run: Path) -> None:
    results = run_eval_all(quant_run, show_progress=False)
    assert list(results) == ["float", "calibration", "qat", "int_infer"]
    epe = {k: r.epe for k, r in results.items()}
    assert epe["calibration"] <= 1.15 * epe["float"], epe
    assert epe["qat"] <= 1.05 * epe["float"], epe
    assert abs(epe["int_infer"] - epe["qat"]) <= 0.01 * epe["qat"], epe
    for stage in results:
        assert json.loads((quant_run / stage / "eval" / "eval.json").read_text())["epe"] == epe[stage]


def test_calibration_is_deterministic(quant_run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(quant_run, copy)
    run_calibrate(copy, force=True, show_progress=False)
    assert (copy / "calibration" / "scales.json").read_bytes() == (quant_run / "calibration" / "scales.json").read_bytes()
    a = load_checkpoint(copy / "calibration" / "checkpoint.pt")["model"]
    b = load_checkpoint(quant_run / "calibration" / "checkpoint.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in b)


def test_qat_resumes_like_float(quant_run: Path, tmp_path: Path) -> None:
    base = tmp_path / "base"
    shutil.copytree(quant_run, base)
    shutil.rmtree(base / "qat")
    straight = tmp_path / "straight"
    shutil.copytree(base, straight)
    proc = subprocess.Popen([STEREOKIT, "qat", "--run-dir", str(base), "--quiet"], stderr=subprocess.PIPE, text=True)
    log = base / "qat" / "log.jsonl"
    wait_for(lambda: log.exists() and log.read_text().count('"loss"') >= 3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert read_stage_record(base, "qat").status == "interrupted"
    run_qat(base, resume=True, show_progress=False)
    run_qat(straight, show_progress=False)
    a = load_checkpoint(base / "qat" / "checkpoint.pt")["model"]
    b = load_checkpoint(straight / "qat" / "checkpoint.pt")["model"]
    assert set(a) == set(b)
    for key in b:
        assert torch.allclose(a[key].float(), b[key].float(), atol=1e-5, rtol=1e-4), key


def test_stages_need_their_parents(tiny_data: Path, tmp_path: Path, quant_run: Path) -> None:
    with pytest.raises(StereokitError, match="not a stereokit run directory"):
        run_calibrate(tmp_path / "empty", show_progress=False)
    float_only = tmp_path / "float_only"
    shutil.copytree(quant_run, float_only)
    shutil.rmtree(float_only / "calibration")
    shutil.rmtree(float_only / "qat")
    with pytest.raises(StereokitError, match="no calibration stage here; run 'stereokit calibrate --run-dir"):
        run_qat(float_only, show_progress=False)
    with pytest.raises(StereokitError, match="no qat stage here; run 'stereokit qat --run-dir .*' first"):
        run_eval(float_only, "int_infer", show_progress=False)
    tampered = tmp_path / "tampered"
    shutil.copytree(quant_run, tampered)
    best = tampered / "float" / "best.pt"
    data = best.read_bytes()
    best.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    with pytest.raises(StereokitError, match="float/best.pt: its sha256 does not match the record"):
        run_calibrate(tampered, force=True, show_progress=False)


def test_qat_throughput_options_train_with_a_finite_loss(tiny_data: Path, tmp_path: Path) -> None:
    """train.qat.channels_last and train.qat.compile: fake-quant steps run compiled in NHWC."""
    cfg = load_config(None, tiny_overrides(tiny_data, max_steps=2) + [
        "train.calibration.steps=2", "train.calibration.batch_size=4", "train.qat.batch_size=4", "train.qat.max_steps=3",
        "train.qat.log_every_steps=1", "train.qat.channels_last=true", "train.qat.compile=true"])
    train_through_qat(cfg, tmp_path / "run")
    log = [json.loads(line) for line in (tmp_path / "run" / "qat" / "log.jsonl").read_text().splitlines()]
    losses = [e["loss"] for e in log if "loss" in e]
    assert len(losses) == 3 and all(math.isfinite(v) and v > 0 for v in losses)
    assert math.isfinite(require_stage(tmp_path / "run", "qat").metrics["best_epe"])



def test_qat_keeps_the_calibrated_model_when_no_step_beats_it_on_validation(tiny_data: Path, tmp_path: Path) -> None:
    """The calibrated start is validated too: a QAT whose steps do not lower the validation EPE (here
    an LR of 1e-12, which leaves every int8 weight where it was) ends with the calibrated weights as
    best.pt, where before it kept whatever its first validation saw."""
    run = tmp_path / "run"
    cfg = load_config(None, tiny_overrides(tiny_data, epochs=4) + QUANT + ["train.qat.lr=1e-12", "train.qat.epochs=2"])
    train_through_qat(cfg, run)
    vals = [e for e in map(json.loads, (run / "qat" / "log.jsonl").read_text().splitlines()) if "val" in e]
    assert [e["step"] for e in vals][:1] == [0] and vals[0]["epoch"] == -1 and len(vals) >= 2
    start = vals[0]["val"]["epe"]
    assert all(e["val"]["epe"] >= start for e in vals[1:]), vals
    best = load_checkpoint(run / "qat" / "best.pt")
    assert best["step"] == 0 and best["best_epe"] == start
    calibrated = load_checkpoint(run / "calibration" / "checkpoint.pt")["model"]
    weights = [k for k, v in best["model"].items() if k.endswith(".weight") and v.is_floating_point()]
    assert weights and all(torch.equal(best["model"][k], calibrated[k]) for k in weights)
    assert run_eval(run, "qat", show_progress=False).epe == pytest.approx(run_eval(run, "calibration", show_progress=False).epe, rel=1e-6)


def test_qat_can_be_retried_with_other_settings_without_remaking_float(quant_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(quant_run, run)
    float_record = (run / "float" / "stage.json").read_bytes()
    # a setting an earlier stage was made with: refused, naming it, nothing changed
    before = {str(p): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}
    refused = subprocess.run([STEREOKIT, "qat", "--run-dir", str(run), "--force", "--set", "model.maxdisp=64"],
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "--set model.maxdisp: the float stage, which the qat stage is made from" in " ".join(refused.stderr.split())
    assert {str(p): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()} == before
    with pytest.raises(StereokitError, match="--set with --resume"):
        run_qat(run, resume=True, show_progress=False, overrides=["train.qat.lr=2e-5"])
    assert {str(p): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()} == before
    # QAT's own learning rate: QAT is re-made, float and calibration stay finished and untouched
    done = subprocess.run([STEREOKIT, "qat", "--run-dir", str(run), "--force", "--quiet", "--set", "train.qat.lr=2e-5",
                           "--set", "train.qat.epochs=1"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "lr: 2.0e-05" in (run / "config.yaml").read_text()
    for stage in ("float", "calibration", "qat"):
        require_stage(run, stage)
    assert (run / "float" / "stage.json").read_bytes() == float_record
    assert read_stage_record(run, "qat").details["world_size"] == 1
    # the float stage refuses a changed QAT setting that the finished qat stage was made with
    cfg = run / "config.yaml"
    refused = subprocess.run([STEREOKIT, "train", "--stage", "float", "--config", str(cfg), "--run-dir", str(run),
                              "--resume", "--set", "train.qat.lr=3e-5"], capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "this run's qat stage was made with another config (train.qat.lr differ)" in " ".join(refused.stderr.split())

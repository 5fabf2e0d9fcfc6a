"""Lineage over real run directories with small byte artifacts: every rule that makes a stage stale."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stereokit.config import StereokitConfig, config_hash, config_to_yaml, load_config, stage_config_hash
from stereokit.errors import StageError
from stereokit.lineage import Lineage, clear_for_rerun, config_for_stage, live_lock, require_stage, stage_lock, stage_state
from stereokit.runs import (StageRecord, artifact, atomic_write_bytes, atomic_write_text, finish_stage, init_run, read_manifest,
                            read_stage_record, write_run_config, write_stage_record)
from stereokit.services.status import run_status


def _stage(run: Path, stage: str, parent_file: str | None, name: str, data: bytes, per_stage: bool = False) -> Path:
    """per_stage: the record carries its stage's settings hash (as stages write since 2026-12-05), else the
    whole config's (as older runs carry)."""
    cfg = StereokitConfig()
    inputs = [artifact(run, run / parent_file)] if parent_file else []
    record = StageRecord(stage=stage, config_hash=stage_config_hash(cfg, stage) if per_stage else config_hash(cfg), inputs=inputs)
    write_stage_record(run, record)
    path = run / stage / name
    atomic_write_bytes(path, data)
    finish_stage(run, record, [path], {"best_epe": 1.25})
    return path


def _chain(run: Path, per_stage: bool = False) -> dict[str, Path]:
    init_run(run, StereokitConfig())
    paths = {"float": _stage(run, "float", None, "best.pt", b"float weights", per_stage)}
    paths["calibration"] = _stage(run, "calibration", "float/best.pt", "checkpoint.pt", b"calibrated", per_stage)
    paths["qat"] = _stage(run, "qat", "calibration/checkpoint.pt", "best.pt", b"qat weights", per_stage)
    paths["export"] = _stage(run, "export", "qat/best.pt", "model.onnx", b"ir", per_stage)
    return paths


def test_a_whole_chain_is_finished(tmp_path: Path) -> None:
    _chain(tmp_path)
    lineage = Lineage(tmp_path)
    assert [lineage.state(s).state for s in ("float", "calibration", "qat", "export")] == ["finished"] * 4
    assert require_stage(tmp_path, "export").inputs[0].path == "qat/best.pt"


def test_a_changed_parent_makes_every_descendant_stale_and_names_the_command(tmp_path: Path) -> None:
    paths = _chain(tmp_path)
    # float re-made in place (its record updated, so float itself is finished): the children are not
    _stage(tmp_path, "float", None, "best.pt", b"other float weights")
    assert stage_state(tmp_path, "float").state == "finished"
    cal = stage_state(tmp_path, "calibration")
    assert cal.state == "stale" and "float/best.pt changed after it ran" in cal.reason
    with pytest.raises(StageError, match=r"calibration stage is stale: its input float/best.pt changed .*'stereokit calibrate --run-dir .* --force'"):
        require_stage(tmp_path, "calibration")
    # two levels down the sentence names the parent and the command to run first
    with pytest.raises(StageError, match=r"qat stage is stale: its parent calibration is stale .*run 'stereokit calibrate .*--force' first"):
        require_stage(tmp_path, "qat")
    with pytest.raises(StageError, match="export stage is stale: its parent qat is stale"):
        require_stage(tmp_path, "export")
    # three generations down, the first stale stage and its reason are named once, not once a generation
    export = stage_state(tmp_path, "export").reason
    assert export.startswith("its parent qat is stale (it comes from calibration: its input float/best.pt changed")
    assert export.count("float/best.pt") == 1 and "its parent calibration" not in export
    assert paths["export"].is_file()  # nothing deleted


def test_an_edited_config_yaml_makes_the_stages_stale(tmp_path: Path) -> None:
    _chain(tmp_path)
    atomic_write_text(tmp_path / "config.yaml", config_to_yaml(load_config(None, ["model.maxdisp=64"])))
    with pytest.raises(StageError, match="float stage is stale: it was made with another config"):
        require_stage(tmp_path, "float")
    with pytest.raises(StageError, match="qat stage is stale: it was made with another config.*train --stage float .*--force. first"):
        require_stage(tmp_path, "qat")


@pytest.mark.parametrize("per_stage", [True, False])
def test_an_edited_qat_setting_makes_only_qat_and_what_it_made_stale(tmp_path: Path, per_stage: bool) -> None:
    _chain(tmp_path, per_stage)
    require_stage(tmp_path, "export")
    atomic_write_text(tmp_path / "config.yaml", config_to_yaml(load_config(None, ["train.qat.lr=1e-5"])))
    lineage = Lineage(tmp_path)
    if per_stage:  # float and calibration were not made from train.qat.*
        assert [lineage.state(s).state for s in ("float", "calibration")] == ["finished", "finished"]
        assert lineage.state("qat").remake == "qat" and "it reads seed, model, data, train.qat, quant" in lineage.state("qat").reason
        with pytest.raises(StageError, match="export stage is stale: its parent qat is stale .*stereokit qat --run-dir .*--force. first"):
            require_stage(tmp_path, "export")
    else:  # a record of the whole config cannot say which settings it read: every stage goes stale
        assert lineage.state("float").state == "stale" and lineage.state("qat").remake == "float"


def test_set_for_a_later_stage_is_refused_when_an_earlier_one_was_made_with_it(tmp_path: Path) -> None:
    _chain(tmp_path, per_stage=True)
    assert config_for_stage(tmp_path, "qat", ["train.qat.lr=1e-5"]).train.qat.lr == 1e-5
    assert config_for_stage(tmp_path, "qat", []) == StereokitConfig()
    with pytest.raises(StageError, match=r"--set model.maxdisp, train.float.lr: the float stage, which the qat stage is made from"):
        config_for_stage(tmp_path, "qat", ["model.maxdisp=64", "train.float.lr=1e-2"])
    with pytest.raises(StageError, match=r"--set quant.reduce_range: the calibration stage, which the qat stage"):
        config_for_stage(tmp_path, "qat", ["quant.reduce_range=false"])
    assert not config_for_stage(tmp_path, "calibration", ["quant.reduce_range=false"]).quant.reduce_range


def test_set_on_a_run_from_before_per_stage_hashes_changes_only_that_stage(tmp_path: Path) -> None:
    """Records carrying the whole config's hash: a later stage's --set is accepted, and writing the new
    config.yaml pins each record to its own settings, so float stays finished and only qat goes stale."""
    _chain(tmp_path, per_stage=False)
    cfg = config_for_stage(tmp_path, "qat", ["train.qat.lr=1e-5"])
    with pytest.raises(StageError, match=r"--set model.maxdisp: the float stage"):
        config_for_stage(tmp_path, "qat", ["model.maxdisp=64"])
    write_run_config(tmp_path, cfg)
    assert read_stage_record(tmp_path, "float").config_hash == stage_config_hash(StereokitConfig(), "float")
    lineage = Lineage(tmp_path)
    assert [lineage.state(s).state for s in ("float", "calibration")] == ["finished", "finished"]
    assert lineage.state("qat").state == "stale" and lineage.state("qat").remake == "qat"
    init_run(tmp_path, cfg)  # the float stage's own command accepts the run's new config


@pytest.mark.parametrize("bad", ["../outside.pt", "/etc/passwd", "float/../../x"])
def test_a_record_naming_a_path_outside_the_run_is_refused(tmp_path: Path, bad: str) -> None:
    _chain(tmp_path)
    path = tmp_path / "calibration" / "stage.json"
    data = json.loads(path.read_text())
    data["inputs"][0]["path"] = bad
    path.write_text(json.dumps(data))
    with pytest.raises(StageError, match="outside the run directory"):
        require_stage(tmp_path, "calibration")


@pytest.mark.parametrize("damage", ["missing", "invalid", "newer"])
def test_a_damaged_run_json_is_one_sentence(tmp_path: Path, damage: str) -> None:
    _chain(tmp_path)
    manifest = tmp_path / "run.json"
    if damage == "missing":
        manifest.unlink()
        match = "run.json is missing"
    elif damage == "invalid":
        manifest.write_text("{nope")
        match = "not a valid run manifest"
    else:
        manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "schema_version": 99}))
        match = "newer stereokit"
    with pytest.raises(StageError, match=match):
        require_stage(tmp_path, "float")


def test_force_moves_the_stage_and_its_descendants_aside(tmp_path: Path) -> None:
    _chain(tmp_path)
    _stage(tmp_path, "export_float", "float/best.pt", "model.onnx", b"float ir")
    with pytest.raises(StageError, match="already here .*--force"):
        clear_for_rerun(tmp_path, "calibration", force=False)
    moved = clear_for_rerun(tmp_path, "calibration", force=True)
    names = sorted(Path(p).name.rsplit("-", 1)[0] for p in moved)
    assert names == ["calibration", "export", "qat"]
    for p in moved:
        assert (Path(p) / "stage.json").is_file() and json.loads((Path(p) / "moved.json").read_text())["because"]
    # float and the float export were not made from calibration: they stay
    assert stage_state(tmp_path, "float").state == "finished"
    assert stage_state(tmp_path, "export_float").state == "finished"
    assert set(read_manifest(tmp_path).stages) == {"float", "export_float"}
    with pytest.raises(StageError, match="no qat stage here .*moved aside to .*\\.stale"):
        require_stage(tmp_path, "qat")
    status = run_status(tmp_path)
    rows = {r.stage: r for r in status.stages}
    assert rows["qat"].state == "missing" and ".stale" in rows["qat"].why
    assert status.next_command.startswith("stereokit calibrate --run-dir")
    assert len(status.moved_aside) == 3


def test_a_live_lock_reads_as_running_and_blocks_a_second_writer(tmp_path: Path) -> None:
    _chain(tmp_path)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        lock = tmp_path / "qat" / ".lock"
        import socket

        lock.write_text(json.dumps({"pid": sleeper.pid, "host": socket.gethostname()}))
        write_stage_record(tmp_path, StageRecord(stage="qat", config_hash=config_hash(StereokitConfig())))
        assert live_lock(tmp_path, "qat") is not None
        assert stage_state(tmp_path, "qat").state == "running"
        with pytest.raises(StageError, match="being made by another process"):
            clear_for_rerun(tmp_path, "qat", force=True)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert stage_state(tmp_path, "qat").state == "interrupted"  # the process is gone


def test_stage_lock_is_removed_when_the_block_ends(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        with stage_lock(tmp_path, "float"):
            assert json.loads((tmp_path / "float" / ".lock").read_text())["pid"] == os.getpid()
            raise RuntimeError("boom")
    assert not (tmp_path / "float" / ".lock").exists()


def test_status_of_a_whole_run_shows_epe_and_sizes(tmp_path: Path) -> None:
    _chain(tmp_path)
    status = run_status(tmp_path)
    rows = {r.stage: r for r in status.stages}
    assert [r.stage for r in status.stages] == ["float", "calibration", "qat", "export", "compile"]
    assert rows["float"].state == "finished" and rows["float"].epe == 1.25 and rows["float"].bytes == len(b"float weights")
    assert rows["compile"].state == "missing" and status.next_command.startswith("stereokit compile")

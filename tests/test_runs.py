from __future__ import annotations

import json
from pathlib import Path

import pytest

from stereokit.config import StereokitConfig, config_hash, load_config
from stereokit.errors import StageError
from stereokit.lineage import require_stage
from stereokit.runs import (
    SCHEMA_VERSION,
    RunManifest,
    StageRecord,
    atomic_write_bytes,
    finish_stage,
    init_run,
    read_manifest,
    read_stage_record,
    run_config,
    sha256_file,
    write_stage_record,
)


def _finished_float(run: Path) -> Path:
    cfg = StereokitConfig()
    init_run(run, cfg)
    record = StageRecord(stage="float", config_hash=config_hash(cfg))
    write_stage_record(run, record)
    ckpt = run / "float" / "checkpoint.pt"
    atomic_write_bytes(ckpt, b"weights")
    finish_stage(run, record, [ckpt], {"epe": 1.5})
    return ckpt


def test_manifest_and_record_round_trip(tmp_path: Path) -> None:
    ckpt = _finished_float(tmp_path)
    manifest = read_manifest(tmp_path)
    assert isinstance(manifest, RunManifest)
    assert manifest.schema_version == SCHEMA_VERSION and manifest.stages == {"float": "finished"}
    record = read_stage_record(tmp_path, "float")
    assert record is not None and record.status == "finished" and record.metrics == {"epe": 1.5}
    assert record.outputs[0].path == "float/checkpoint.pt"
    assert record.outputs[0].sha256 == sha256_file(ckpt) and record.outputs[0].bytes == 7
    assert "torch" in record.versions
    assert require_stage(tmp_path, "float") == record
    assert run_config(tmp_path) == StereokitConfig()


def test_missing_stage_names_the_command(tmp_path: Path) -> None:
    with pytest.raises(StageError, match="no calibration stage here; run 'stereokit calibrate --run-dir .*' first"):
        require_stage(tmp_path, "calibration")


def test_tampered_artifact_is_refused(tmp_path: Path) -> None:
    ckpt = _finished_float(tmp_path)
    ckpt.write_bytes(b"weightz")
    with pytest.raises(StageError, match="float/checkpoint.pt: its sha256 does not match"):
        require_stage(tmp_path, "float")
    ckpt.unlink()
    with pytest.raises(StageError, match="float/checkpoint.pt is missing"):
        require_stage(tmp_path, "float")


def test_unfinished_and_other_schema_are_refused(tmp_path: Path) -> None:
    write_stage_record(tmp_path, StageRecord(stage="float"))
    with pytest.raises(StageError, match="interrupted, not finished"):  # "running", but no process holds it
        require_stage(tmp_path, "float")
    path = tmp_path / "float" / "stage.json"
    data = json.loads(path.read_text())
    data["schema_version"] = SCHEMA_VERSION + 1
    path.write_text(json.dumps(data))
    with pytest.raises(StageError, match="schema version"):
        require_stage(tmp_path, "float")
    path.write_text("{not json")
    with pytest.raises(StageError, match="not a valid stage record"):
        require_stage(tmp_path, "float")


def test_a_run_keeps_its_config(tmp_path: Path) -> None:
    _finished_float(tmp_path)
    with pytest.raises(StageError, match="another config"):
        init_run(tmp_path, load_config(None, ["model.maxdisp=64"]))


def test_atomic_write_leaves_no_temporary_files(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b.bin"
    atomic_write_bytes(target, b"1")
    atomic_write_bytes(target, b"22")
    assert target.read_bytes() == b"22"
    assert [p.name for p in target.parent.iterdir()] == ["b.bin"]

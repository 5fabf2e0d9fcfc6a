"""The run directory: versioned manifests, atomic writes and hashed artifacts.

Layout (see docs/concepts.md):
    runs/<name>/run.json, config.yaml, float/, calibration/, qat/, export/, compile/
Every stage directory holds a `stage.json` (StageRecord). Whether a stage can be trusted (its
whole chain finished, unchanged, made with the run's config) is decided in `stereokit.lineage`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from stereokit import __version__
from stereokit.config import StereokitConfig, changed_settings, config_from_dict, config_hash, config_to_yaml, made_with_settings, read_yaml, stage_config_hash
from stereokit.errors import StageError

SCHEMA_VERSION = 1
STAGES = ("float", "calibration", "qat", "export", "compile")
# What a user runs to produce each stage: named in every "run this first" sentence.
STAGE_COMMAND = {
    "float": "stereokit train --stage float",
    "calibration": "stereokit calibrate",
    "qat": "stereokit qat",
    "export": "stereokit export",
    "compile": "stereokit compile",
}


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, fsync, then rename over it.

    A crash leaves either the old file or the new one, never a torn one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_torch_save(obj: Any, path: Path) -> None:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def _fsync_dir(directory: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Artifact(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="relative to the run directory")
    sha256: str
    bytes: int


class StageRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: int = SCHEMA_VERSION
    stage: str
    status: Literal["running", "finished", "failed", "interrupted"] = "running"
    started: str = Field(default_factory=now_iso)
    finished: str | None = None
    config_hash: str = ""
    inputs: list[Artifact] = Field(default_factory=list)
    outputs: list[Artifact] = Field(default_factory=list)
    metrics: dict[str, Any] = Field(default_factory=dict)
    details: dict[str, Any] = Field(default_factory=dict)
    versions: dict[str, str] = Field(default_factory=dict)


class RunManifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: int = SCHEMA_VERSION
    stereokit_version: str = __version__
    created: str = Field(default_factory=now_iso)
    config_hash: str
    stages: dict[str, str] = Field(default_factory=dict, description="stage -> status")


def library_versions() -> dict[str, str]:
    versions = {"stereokit": __version__, "python": platform.python_version()}
    for name in ("torch", "onnx", "onnxruntime", "numpy"):
        try:
            module = __import__(name)
            versions[name] = str(getattr(module, "__version__", "?"))
        except ImportError:
            pass
    return versions


def artifact(run_dir: Path, path: Path) -> Artifact:
    path = Path(path)
    return Artifact(path=str(path.relative_to(run_dir)), sha256=sha256_file(path), bytes=path.stat().st_size)


def recorded_artifact(run_dir: Path, record: StageRecord, path: Path) -> Artifact:
    """The artifact `record` lists for `path`, with the sha256 its stage wrote (so a later change to the
    file shows as stale downstream); `path` hashed now when the record does not list it."""
    rel = str(Path(path).relative_to(run_dir))
    return next((a for a in record.outputs if a.path == rel), None) or artifact(run_dir, path)


def _read_model(path: Path, model: type[BaseModel], what: str) -> Any:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise StageError(f"{path}: cannot read the {what} ({exc.strerror or exc.__class__.__name__}).") from None
    try:
        version = json.loads(data).get("schema_version")
    except (ValueError, AttributeError):
        version = None
    if isinstance(version, int) and version > SCHEMA_VERSION:
        raise StageError(f"{path}: written by a newer stereokit (schema version {version}, this one reads {SCHEMA_VERSION}); upgrade stereokit.")
    try:
        return model.model_validate_json(data)
    except (ValidationError, ValueError):
        raise StageError(f"{path}: not a valid {what}; the file is damaged or from another tool.") from None


def read_manifest(run_dir: Path) -> RunManifest | None:
    path = Path(run_dir) / "run.json"
    if not path.exists():
        return None
    manifest = _read_model(path, RunManifest, "run manifest")
    if manifest.schema_version != SCHEMA_VERSION:
        raise StageError(
            f"{path}: run schema version {manifest.schema_version} is not {SCHEMA_VERSION}; "
            "start a new run directory."
        )
    return manifest


def write_manifest(run_dir: Path, manifest: RunManifest) -> None:
    atomic_write_text(Path(run_dir) / "run.json", manifest.model_dump_json(indent=2))


def made_with(record: StageRecord, cfg: StereokitConfig, run_cfg: StereokitConfig | None = None) -> bool:
    """Whether a stage's record was made with `cfg`'s settings for it. A record from before per-stage
    hashes carries the whole hash of the config.yaml it was made with: given that config (`run_cfg`),
    only its stage's settings need to match."""
    if made_with_settings(record.config_hash, cfg, record.stage):
        return True
    return (run_cfg is not None and record.config_hash == config_hash(run_cfg)
            and stage_config_hash(run_cfg, record.stage) == stage_config_hash(cfg, record.stage))


def init_run(run_dir: Path, cfg: StereokitConfig, reset: bool = False) -> RunManifest:
    """Create the run directory or reopen it; a finished stage's settings must stay the ones it was
    made with, so stages never mix settings silently (`reset`: start over)."""
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    if manifest is not None and manifest.config_hash != config_hash(cfg) and not reset:
        current = run_config(run_dir)
        for stage, status in manifest.stages.items():
            record = read_stage_record(run_dir, stage) if status == "finished" else None
            if record is not None and not made_with(record, cfg, current):
                keys = changed_settings(current, cfg, stage)
                raise StageError(
                    f"{run_dir}: this run's {stage} stage was made with another config ({', '.join(keys) or 'its settings'} "
                    "differ); use its config.yaml (--config), --force to start over, or a new --run-dir."
                )
    return write_run_config(run_dir, cfg, manifest)


def write_run_config(run_dir: Path, cfg: StereokitConfig, manifest: RunManifest | None = None) -> RunManifest:
    """config.yaml and the manifest's hash of it; the stages' records keep their own."""
    run_dir = Path(run_dir)
    manifest = manifest or read_manifest(run_dir) or RunManifest(config_hash=config_hash(cfg))
    if (run_dir / "config.yaml").is_file() and manifest.config_hash != config_hash(cfg):
        _pin_whole_config_records(run_dir, run_config(run_dir), manifest)
    manifest.config_hash = config_hash(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.yaml", config_to_yaml(cfg))
    write_manifest(run_dir, manifest)
    return manifest


def _pin_whole_config_records(run_dir: Path, old: StereokitConfig, manifest: RunManifest) -> None:
    """Before config.yaml changes: a record that carries the old file's whole hash (written before
    per-stage hashes) gets its stage's settings hash from that file, which it was made with; once the
    file changes, nothing else could tell."""
    for stage in manifest.stages:
        record = read_stage_record(run_dir, stage)
        if record is not None and record.config_hash == config_hash(old):
            record.config_hash = stage_config_hash(old, stage)
            atomic_write_text(stage_dir(run_dir, stage) / "stage.json", record.model_dump_json(indent=2))


def run_config(run_dir: Path) -> StereokitConfig:
    """The config a run was made with (its config.yaml)."""
    path = Path(run_dir) / "config.yaml"
    if not path.exists():
        raise StageError(f"{run_dir}: not a stereokit run directory (no config.yaml); run '{STAGE_COMMAND['float']}' first.")
    return config_from_dict(read_yaml(path), str(path))


def stage_dir(run_dir: Path, stage: str) -> Path:
    return Path(run_dir) / stage


def write_stage_record(run_dir: Path, record: StageRecord) -> None:
    atomic_write_text(stage_dir(run_dir, record.stage) / "stage.json", record.model_dump_json(indent=2))
    manifest = read_manifest(run_dir) or RunManifest(config_hash=record.config_hash)
    manifest.stages[record.stage] = record.status
    write_manifest(run_dir, manifest)


def read_stage_record(run_dir: Path, stage: str) -> StageRecord | None:
    path = stage_dir(run_dir, stage) / "stage.json"
    if not path.exists():
        return None
    return _read_model(path, StageRecord, "stage record")


def finish_stage(run_dir: Path, record: StageRecord, outputs: list[Path], metrics: dict[str, Any]) -> StageRecord:
    record.outputs = [artifact(run_dir, p) for p in outputs]
    record.metrics = metrics
    record.status = "finished"
    record.finished = now_iso()
    record.versions = library_versions()
    write_stage_record(run_dir, record)
    return record

"""Lineage of a run: which stages are finished, stale (and why), running or missing.

A stage counts as finished only when, all along its chain:
  - its record is readable, of our schema and says finished;
  - every output it lists is inside the run and still has the recorded sha256;
  - every input it lists is inside the run, still has the sha256 recorded when the stage ran,
    and comes from a parent stage that is itself finished;
  - its config hash is the hash of the run's config.yaml as it is now.
Anything else is stale, and nothing uses it. Re-running a stage with --force moves the stage and
every stage made from it aside into RUN/.stale/, one rename per stage; nothing is deleted.
"""

from __future__ import annotations

import json
import os
import socket
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Literal

from stereokit.config import StereokitConfig, changed_settings, load_config, stage_settings
from stereokit.errors import StageError, StereokitError
from stereokit.runs import (
    SCHEMA_VERSION,
    StageRecord,
    atomic_write_text,
    made_with,
    read_manifest,
    read_stage_record,
    run_config,
    sha256_file,
    stage_dir,
    write_manifest,
)

# Every stage a run can hold, in flow order, and the stages each may be made from.
# compile-<runtime>: what `compile --runtime NAME` writes beside the default RUN/compile/
RUNTIME_STAGES = ("compile-ort", "compile-openvino")
# adapt: a float model made by self-supervised adaptation (from --init weights), taken like float
ALL_STAGES = ("float", "adapt", "calibration", "qat", "export", "export_float", "compile", *RUNTIME_STAGES)
PARENTS: dict[str, tuple[str, ...]] = {
    "float": (),
    "adapt": (),
    "calibration": ("float", "adapt"),
    "qat": ("calibration",),
    "export": ("qat", "calibration"),
    "export_float": ("float",),
    "compile": ("export", "export_float"),
    **{stage: ("export", "export_float") for stage in RUNTIME_STAGES},
}
STALE_DIR = ".stale"
LOCK_NAME = ".lock"

State = Literal["finished", "stale", "running", "interrupted", "failed", "missing", "damaged"]


def remake_command(run_dir: Path, stage: str, source: str = "qat") -> str:
    """The command that (re)makes `stage` in this run."""
    run = str(run_dir)
    config = f" --config {Path(run) / 'config.yaml'}" if (Path(run) / "config.yaml").is_file() else ""
    return {
        "float": f"stereokit train --stage float{config} --run-dir {run}",
        "adapt": f"stereokit train --stage adapt --init MODEL --pairs DIR --run-dir {run} --force",
        "calibration": f"stereokit calibrate --run-dir {run}",
        "qat": f"stereokit qat --run-dir {run}",
        "export": f"stereokit export {Path(run) / source}",
        "export_float": f"stereokit export {Path(run) / 'float'}",
        "compile": f"stereokit compile {Path(run) / source}",
        **{s: f"stereokit compile {Path(run) / source} --runtime {s.split('-', 1)[1]}" for s in RUNTIME_STAGES},
    }[stage]


@dataclass
class StageState:
    stage: str
    state: State
    reason: str = ""
    record: StageRecord | None = None
    # the stage to re-make first (the stage itself, or the earliest ancestor that changed)
    remake: str | None = None
    parents: list[str] = field(default_factory=list)
    # where a chain of stale stages starts, and why: "float: float/best.pt: its sha256 does not match ..."
    cause: str = ""


def _safe_path(run_dir: Path, rel: str, where: Path) -> Path:
    """An artifact path from a record, refused unless it stays inside the run directory."""
    p = Path(rel)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise StageError(f"{where}: names the artifact '{rel}' outside the run directory; the record is damaged or was edited.")
    return run_dir / p


def _stage_of(rel: str) -> str:
    return Path(rel).parts[0]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def live_lock(run_dir: Path, stage: str) -> dict | None:
    """The lock of a process still running `stage` on this host, if any."""
    path = stage_dir(run_dir, stage) / LOCK_NAME
    try:
        lock = json.loads(path.read_text())
        pid, host = int(lock["pid"]), str(lock["host"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if host != socket.gethostname():
        return lock  # another machine's process: we cannot tell, so we trust the lock
    return lock if pid != os.getpid() and _pid_alive(pid) else None


@contextmanager
def stage_lock(run_dir: Path, stage: str) -> Iterator[None]:
    """Mark `stage` as being made by this process for as long as the block runs."""
    path = stage_dir(run_dir, stage) / LOCK_NAME
    atomic_write_text(path, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                        "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}))
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


class Lineage:
    """The states of one run's stages, computed once per command (hashes are cached)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self._hashes: dict[Path, str] = {}
        self._states: dict[str, StageState] = {}
        self._config: StereokitConfig | None = None
        self._config_error: str | None = None
        # a damaged or newer run.json is refused with its own sentence; a missing one marks every stage damaged
        manifest = read_manifest(self.run_dir)
        self._manifest_error = None
        if manifest is None and any(stage_dir(self.run_dir, s).exists() for s in ALL_STAGES):
            self._manifest_error = f"{self.run_dir / 'run.json'} is missing, so this is not a whole run directory"
        if (self.run_dir / "config.yaml").is_file():
            try:
                self._config = run_config(self.run_dir)
            except StereokitError as exc:
                self._config_error = str(exc)

    def _sha(self, path: Path) -> str:
        if path not in self._hashes:
            self._hashes[path] = sha256_file(path)
        return self._hashes[path]

    def state(self, stage: str) -> StageState:
        if stage not in self._states:
            self._states[stage] = StageState(stage, "stale", "its inputs lead back to itself", remake=stage)
            self._states[stage] = self._compute(stage)
        return self._states[stage]

    def _compute(self, stage: str) -> StageState:
        where = stage_dir(self.run_dir, stage)
        try:
            record = read_stage_record(self.run_dir, stage)
        except StageError as exc:
            return StageState(stage, "damaged", str(exc).split(": ", 1)[-1], remake=stage)
        if record is None:
            partly = where.is_dir() and any(p.name != LOCK_NAME for p in where.iterdir())
            if live_lock(self.run_dir, stage):
                return StageState(stage, "running", "being made now", remake=None)
            return StageState(stage, "missing", "partly written, no record" if partly else "", remake=stage)
        if record.schema_version != SCHEMA_VERSION:
            return StageState(stage, "damaged", f"schema version {record.schema_version}, this stereokit reads {SCHEMA_VERSION}",
                              record, remake=stage)
        if record.stage != stage:
            return StageState(stage, "damaged", f"its record is of the {record.stage} stage", record, remake=stage)
        if record.status == "running":
            if live_lock(self.run_dir, stage):
                return StageState(stage, "running", "being made now", record)
            return StageState(stage, "interrupted", "the process that was making it is gone", record, remake=stage)
        if record.status != "finished":
            return StageState(stage, record.status, f"it {'failed' if record.status == 'failed' else 'was interrupted'}",
                              record, remake=stage)
        try:
            return self._check_finished(stage, record)
        except StageError as exc:
            return StageState(stage, "damaged", str(exc).split(": ", 1)[-1], record, remake=stage)

    def _check_finished(self, stage: str, record: StageRecord) -> StageState:
        where = stage_dir(self.run_dir, stage) / "stage.json"
        if self._manifest_error:
            return StageState(stage, "damaged", self._manifest_error, record, remake="float")
        for out in record.outputs:
            path = _safe_path(self.run_dir, out.path, where)
            if not path.is_file():
                return StageState(stage, "stale", f"{out.path} is missing, though its record lists it", record, remake=stage)
            if path.stat().st_size != out.bytes or self._sha(path) != out.sha256:
                return StageState(stage, "stale", f"{out.path}: its sha256 does not match the record (changed since it was written)",
                                  record, remake=stage)
        if self._config_error:
            return StageState(stage, "stale", self._config_error, record, remake="float")
        if self._config is None:
            return StageState(stage, "stale", "the run has no config.yaml", record, remake="float")
        if not made_with(record, self._config):
            # re-make from the earliest stage whose settings changed: a parent's, when it is stale too
            stale_parents = [s for s in (self.state(p) for p in self._parents_in(record, stage)) if s.state != "finished"]
            reads = ", ".join(stage_settings(self._config, stage))
            return StageState(stage, "stale", f"it was made with another config than the run's config.yaml (edited since; it reads {reads})",
                              record, remake=next((s.remake for s in stale_parents if s.remake), stage))
        parents: list[str] = []
        for inp in record.inputs:
            path = _safe_path(self.run_dir, inp.path, where)
            parent = _stage_of(inp.path)
            if parent not in PARENTS.get(stage, ()):
                continue  # an input of a grandparent, carried along for the record
            if parent not in parents:
                parents.append(parent)
            pstate = self.state(parent)
            if pstate.state != "finished":
                # a chain names its first stale stage once, not once per generation between
                why = f"its parent {parent} is {pstate.state}"
                if pstate.cause:
                    why += f" (it comes from {pstate.cause})"
                elif pstate.reason:
                    why += f" ({pstate.reason})"
                cause = pstate.cause or (f"{parent}: {pstate.reason}" if pstate.reason else "")
                return StageState(stage, "stale", why, record, remake=pstate.remake or parent, parents=parents,
                                  cause=cause)
            if not path.is_file():
                return StageState(stage, "stale", f"its input {inp.path} is gone (re-made or moved since it ran)", record,
                                  remake=parent, parents=parents)
            if self._sha(path) != inp.sha256:
                return StageState(stage, "stale", f"its input {inp.path} changed after it ran (the {parent} stage was re-made)",
                                  record, remake=stage, parents=parents)
        return StageState(stage, "finished", "", record, parents=parents)

    def _parents_in(self, record: StageRecord, stage: str) -> list[str]:
        return list(dict.fromkeys(p for p in (_stage_of(i.path) for i in record.inputs) if p in PARENTS.get(stage, ())))

    def descendants(self, stage: str) -> list[str]:
        """Stages made (directly or not) from `stage`, by their records; unreadable ones by the flow."""
        found: list[str] = []
        frontier = [stage]
        while frontier:
            current = frontier.pop()
            for child in ALL_STAGES:
                if child in found or child == stage or current not in PARENTS[child]:
                    continue
                if not stage_dir(self.run_dir, child).exists():
                    continue
                try:
                    record = read_stage_record(self.run_dir, child)
                except StageError:
                    record = None
                made_from = {_stage_of(i.path) for i in record.inputs} if record is not None and record.inputs else {current}
                if current in made_from:
                    found.append(child)
                    frontier.append(child)
        return [s for s in ALL_STAGES if s in found]


def ancestors(stage: str) -> list[str]:
    """Every stage `stage` may be made from, directly or not, nearest first."""
    found: list[str] = []
    for parent in PARENTS.get(stage, ()):
        found += [s for s in (parent, *ancestors(parent)) if s not in found]
    return found


def config_for_stage(run_dir: Path, stage: str, overrides: list[str]) -> StereokitConfig:
    """The run's config with `--set` overrides for (re)making `stage`, refused when they would change
    the settings of a finished stage it is made from (train.qat.lr for qat: yes; model.* : no)."""
    current = run_config(run_dir)
    if not overrides:
        return current
    cfg = load_config(Path(run_dir) / "config.yaml", overrides)
    lineage = Lineage(run_dir)
    for ancestor in reversed(ancestors(stage)):  # the earliest first: re-making it re-makes the rest
        st = lineage.state(ancestor)
        if st.state == "finished" and st.record is not None and not made_with(st.record, cfg, current):
            keys = ", ".join(changed_settings(current, cfg, ancestor))
            raise StageError(f"--set {keys}: the {ancestor} stage, which the {stage} stage is made from, was made with the "
                             f"run's values; change them by re-making {ancestor} ('{remake_command(run_dir, ancestor)} --force') "
                             "or in a new --run-dir.")
    return cfg


def stage_state(run_dir: Path, stage: str) -> StageState:
    return Lineage(run_dir).state(stage)


def fix_command(run_dir: Path, st: StageState) -> str | None:
    """The command that makes `st` usable: resume, re-make (with --force over a stale one), or make."""
    if st.state in ("finished", "running"):
        return None
    if st.state == "interrupted" and st.stage in ("float", "qat"):
        return remake_command(run_dir, st.stage) + " --resume"
    remake = st.remake or st.stage
    source = "qat"
    if remake in ("export", "compile") and st.record is not None and st.record.inputs:
        source = _stage_of(st.record.inputs[0].path)
    return remake_command(run_dir, remake, source) + ("" if st.state == "missing" else " --force")


def refusal(run_dir: Path, st: StageState) -> str:
    """One sentence: which stage, why it cannot be used, and the command that re-makes it."""
    where = stage_dir(run_dir, st.stage)
    if st.state == "missing":
        moved = latest_moved(run_dir, st.stage)
        extra = f" (the last one was moved aside to {moved})" if moved else ""
        return f"{where}: no {st.stage} stage here{extra}; run '{remake_command(run_dir, st.stage)}' first."
    if st.state == "running":
        return f"{where}: the {st.stage} stage is being made by another process right now; wait for it to finish."
    if st.state in ("interrupted", "failed"):
        resume = " --resume" if st.stage in ("float", "qat") and st.state == "interrupted" else ""
        return f"{where}: the {st.stage} stage is {st.state}, not finished; run '{remake_command(run_dir, st.stage)}{resume}'."
    remake = st.remake or st.stage
    cmd = fix_command(run_dir, st)
    if st.state == "damaged":
        return f"{where}: the {st.stage} stage cannot be used: {st.reason}; run '{cmd}' again."
    return f"{where}: the {st.stage} stage is stale: {st.reason}; run '{cmd}'" + (" first." if remake != st.stage else ".")


def require_stage(run_dir: Path, stage: str) -> StageRecord:
    """The stage's record when the whole chain behind it is finished; otherwise one sentence."""
    run_dir = Path(run_dir)
    st = stage_state(run_dir, stage)
    if st.state != "finished" or st.record is None:
        raise StageError(refusal(run_dir, st))
    return st.record


def stale_root(run_dir: Path) -> Path:
    return Path(run_dir) / STALE_DIR


def latest_moved(run_dir: Path, stage: str) -> Path | None:
    root = stale_root(run_dir)
    if not root.is_dir():
        return None
    moved = sorted(p for p in root.iterdir() if p.is_dir() and p.name.rsplit("-", 1)[0] == stage)
    return moved[-1] if moved else None


def moved_aside(run_dir: Path) -> list[dict[str, str]]:
    """What earlier --force runs moved into RUN/.stale/, newest first."""
    root = stale_root(run_dir)
    rows = []
    if root.is_dir():
        for p in sorted(root.iterdir(), reverse=True):
            why = {}
            try:
                why = json.loads((p / "moved.json").read_text())
            except (OSError, ValueError):
                pass
            rows.append({"stage": p.name.rsplit("-", 1)[0], "path": str(p), "because": str(why.get("because", ""))})
    return rows


def move_aside(run_dir: Path, stages: list[str], because: str) -> list[str]:
    """Rename each stage directory into RUN/.stale/<stage>-<time>/ (atomic per stage); run.json forgets them."""
    run_dir = Path(run_dir)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    moved = []
    for stage in stages:
        src = stage_dir(run_dir, stage)
        if not src.exists():
            continue
        dst = stale_root(run_dir) / f"{stage}-{stamp}"
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)
        atomic_write_text(dst / "moved.json", json.dumps({"stage": stage, "moved": stamp, "because": because}))
        moved.append(str(dst))
    manifest = read_manifest(run_dir)
    if manifest is not None and any(s in manifest.stages for s in stages):
        for s in stages:
            manifest.stages.pop(s, None)
        write_manifest(run_dir, manifest)
    return moved


def check_rerun(run_dir: Path, stage: str, force: bool, what: str | None = None) -> bool:
    """Refuse to remake `stage` while another process makes it, or over an existing one without
    --force. True when something is there (and --force was given)."""
    run_dir = Path(run_dir)
    out = stage_dir(run_dir, stage)
    if live_lock(run_dir, stage):
        raise StageError(f"{out}: the {stage} stage is being made by another process right now; wait for it to finish.")
    try:
        existing = read_stage_record(run_dir, stage)
    except StageError:
        existing = None
    occupied = existing is not None or (out.exists() and any(out.iterdir()))
    if occupied and not force:
        status = existing.status if existing is not None else "partly written"
        resume = "--resume to continue it or " if stage in ("float", "qat") else ""
        raise StageError(f"{out}: {what or f'a {stage} stage'} is already here ({status}); pass {resume}--force to start over "
                         "(it and every stage made from it are moved to RUN/.stale/).")
    return occupied


def clear_for_rerun(run_dir: Path, stage: str, force: bool, what: str | None = None) -> list[str]:
    """Before (re)making `stage`: refuse as check_rerun does; with --force, move the stage and
    every stage made from it aside. Returns the moved paths."""
    if not check_rerun(run_dir, stage, force, what):
        return []
    victims = [stage] + Lineage(run_dir).descendants(stage)
    return move_aside(Path(run_dir), victims, f"{stage} re-made with --force")


__all__ = ["ALL_STAGES", "Lineage", "fix_command", "StageState", "check_rerun", "clear_for_rerun", "live_lock", "move_aside", "moved_aside",
           "refusal", "remake_command", "require_stage", "stage_lock", "stage_state"]

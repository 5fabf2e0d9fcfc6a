"""`stereokit status RUN`: every stage of a run, finished / stale (why) / running / missing, its key
metric, size and time, and the next command to run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from stereokit.errors import StereokitError
from stereokit.lineage import ALL_STAGES, RUNTIME_STAGES, Lineage, StageState, fix_command, latest_moved, moved_aside
from stereokit.runs import stage_dir

# The stages a run needs, in order; export_float is optional (a float ONNX for comparison).
FLOW = ("float", "calibration", "qat", "export", "compile")


class StageRow(BaseModel):
    stage: str
    state: str
    why: str
    epe: float | None
    epe_split: str | None
    bytes: int
    finished: str | None
    command: str | None


class StatusResult(BaseModel):
    run_dir: Path
    stages: list[StageRow]
    moved_aside: list[dict[str, str]]
    next_command: str | None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _key_metric(run_dir: Path, st: StageState) -> tuple[float | None, str | None]:
    """The test-split EPE when eval/validate-bpu wrote one, else the validation EPE that chose best.pt."""
    where = stage_dir(run_dir, st.stage)
    report = _read_json(where / "validate.json") if st.stage.startswith("compile") else _read_json(where / "eval" / "eval.json")
    if isinstance(report.get("epe"), (int, float)):
        return float(report["epe"]), "test"
    if st.record is not None and isinstance(st.record.metrics.get("best_epe"), (int, float)):
        return float(st.record.metrics["best_epe"]), "val"
    return None, None


def run_status(run_dir: Path) -> StatusResult:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise StereokitError(f"{run_dir}: no such run directory.")
    if not (run_dir / "run.json").is_file() and not (run_dir / "config.yaml").is_file():
        raise StereokitError(f"{run_dir}: not a stereokit run directory (no run.json or config.yaml).")
    lineage = Lineage(run_dir)
    rows: list[StageRow] = []
    for stage in ALL_STAGES:
        st = lineage.state(stage)
        if stage in ("export_float", "adapt", *RUNTIME_STAGES) and st.state == "missing":
            continue
        why = st.reason
        if st.state == "missing" and (moved := latest_moved(run_dir, stage)) is not None:
            why = f"moved aside to {moved}"
        epe, split = _key_metric(run_dir, st)
        size = sum(a.bytes for a in st.record.outputs) if st.record is not None else 0
        rows.append(StageRow(stage=stage, state=st.state, why=why, epe=epe, epe_split=split, bytes=size,
                             finished=st.record.finished if st.record is not None else None, command=fix_command(run_dir, st)))
    pending = [r for r in rows if r.stage in FLOW and r.state != "finished"]
    if pending:
        next_command = pending[0].command
    elif (run_dir / "compile" / "validate.json").is_file():  # validated: what is left is to use it
        next_command = f"stereokit infer --model {run_dir / 'compile' / 'model.hbm'} --imgl LEFT.png --imgr RIGHT.png"
    else:
        next_command = f"stereokit validate-bpu {run_dir / 'compile'}"
    return StatusResult(run_dir=run_dir, stages=rows, moved_aside=moved_aside(run_dir), next_command=next_command)

"""`stereokit check RUN/export`: which node runs on the integer accelerator path, which falls back, why."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from pydantic import BaseModel

from stereokit.deploy.checker import CheckReport, check_model
from stereokit.deploy.ir import islands_for, load_ir
from stereokit.deploy.target import load_target
from stereokit.errors import StereokitError


class NodeRow(BaseModel):
    name: str
    op: str
    device: str
    rule: str
    macs: int
    dtype: str


class CheckResult(BaseModel):
    model: Path
    target: str
    nodes: list[NodeRow]
    by_op: dict[str, dict[str, int]]
    macs: int
    accelerator_macs: int
    accelerator_share: float
    fallbacks: int
    errors: list[str]
    dtypes: dict[str, int]


def resolve_onnx(path: Path) -> Path:
    """RUN/export, RUN/export_float or a .onnx file."""
    path = Path(path)
    candidate = path / "model.onnx" if path.is_dir() else path
    if not candidate.is_file():
        raise StereokitError(f"{path}: no model.onnx here; run 'stereokit export RUN/qat' first.")
    return candidate


def to_result(path: Path, report: CheckReport) -> CheckResult:
    macs = report.macs
    return CheckResult(
        model=path, target=report.target,
        nodes=[NodeRow(**n.__dict__) for n in report.nodes], by_op=report.by_op(), macs=macs,
        accelerator_macs=report.accelerator_macs, accelerator_share=report.accelerator_macs / macs if macs else 0.0,
        fallbacks=len(report.fallbacks), errors=report.errors,
        dtypes=dict(Counter(n.dtype for n in report.nodes)),
    )


def run_check(path: Path, target: str = "bpu-sim") -> CheckResult:
    profile = load_target(target)
    model_path = resolve_onnx(path)
    model = load_ir(model_path)
    report = check_model(model, profile, islands_for(model, str(model_path)))
    return to_result(model_path, report)

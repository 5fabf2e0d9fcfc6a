"""`stereokit check RUN/export`: which node runs on the integer accelerator path, which falls back, why."""

from __future__ import annotations

from pathlib import Path

import onnx
from pydantic import BaseModel

from stereokit.deploy.checker import CheckReport, check_model
from stereokit.deploy.target import load_target
from stereokit.errors import StereokitError
from stereokit.runs import run_config


class NodeRow(BaseModel):
    name: str
    op: str
    device: str
    rule: str
    macs: int


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


def resolve_onnx(path: Path) -> Path:
    """RUN/export, RUN/export_float or a .onnx file."""
    path = Path(path)
    candidate = path / "model.onnx" if path.is_dir() else path
    if not candidate.is_file():
        raise StereokitError(f"{path}: no model.onnx here; run 'stereokit export RUN/qat' first.")
    return candidate


def islands_for(model_path: Path) -> list[str]:
    """The config's 16-bit and float module paths, when the model sits in a run directory."""
    run_dir = model_path.parent.parent
    if (run_dir / "config.yaml").is_file():
        cfg = run_config(run_dir)
        return cfg.quant.int16_modules + cfg.quant.float_modules
    return []


def load_onnx(path: Path) -> onnx.ModelProto:
    try:
        return onnx.load(str(path))
    except Exception:  # noqa: BLE001 - protobuf raises several types on damaged input
        raise StereokitError(f"{path}: not a readable ONNX model.") from None


def to_result(path: Path, report: CheckReport) -> CheckResult:
    macs = report.macs
    return CheckResult(
        model=path, target=report.target,
        nodes=[NodeRow(**n.__dict__) for n in report.nodes], by_op=report.by_op(), macs=macs,
        accelerator_macs=report.accelerator_macs, accelerator_share=report.accelerator_macs / macs if macs else 0.0,
        fallbacks=len(report.fallbacks), errors=report.errors,
    )


def run_check(path: Path, target: str = "bpu-sim") -> CheckResult:
    model_path = resolve_onnx(path)
    profile = load_target(target)
    report = check_model(load_onnx(model_path), profile, islands_for(model_path))
    return to_result(model_path, report)

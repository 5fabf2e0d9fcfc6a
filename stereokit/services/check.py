"""`stereokit check RUN/export`: which node runs on the integer accelerator path, which falls back, why."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import onnx
from pydantic import BaseModel

from stereokit.deploy.checker import CheckReport, check_model
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


REQUIRED_METADATA = ("source_stage", "maxdisp", "mean", "std", "rgb_input", "int16_modules", "float_modules")


def ir_metadata(model: onnx.ModelProto, name: str) -> dict[str, str]:
    """The IR's own metadata; a model without what stereokit writes into it is refused."""
    meta = {p.key: p.value for p in model.metadata_props}
    missing = [k for k in REQUIRED_METADATA if k not in meta]
    if missing:
        raise StereokitError(f"{name}: not a stereokit IR (its metadata lacks {', '.join(missing)}); make it with 'stereokit export'.")
    return meta


def islands_for(model: onnx.ModelProto, name: str) -> list[str]:
    """The module paths the IR's own precision map keeps in float (their ops may fall back to the
    CPU), so a copied .onnx checks and compiles the same as the one in its run."""
    meta = ir_metadata(model, name)
    lists = {}
    for key in ("int16_modules", "float_modules"):
        try:
            lists[key] = json.loads(meta[key])
        except (ValueError, TypeError):
            lists[key] = None
        if not isinstance(lists[key], list) or not all(isinstance(p, str) for p in lists[key]):
            raise StereokitError(f"{name}: its {key} metadata is not a JSON list of module paths.")
    return lists["float_modules"]


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
        dtypes=dict(Counter(n.dtype for n in report.nodes)),
    )


def run_check(path: Path, target: str = "bpu-sim") -> CheckResult:
    profile = load_target(target)
    model_path = resolve_onnx(path)
    model = load_onnx(model_path)
    report = check_model(model, profile, islands_for(model, str(model_path)))
    return to_result(model_path, report)

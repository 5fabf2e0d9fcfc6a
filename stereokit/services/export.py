"""`stereokit export RUN/qat|RUN/float`: the quantized IR (QDQ ONNX) or a float ONNX for comparison."""

from __future__ import annotations

from pathlib import Path

import onnx
from pydantic import BaseModel
from torch import nn

from stereokit import __version__
from stereokit.config import StereokitConfig, config_hash
from stereokit.deploy.onnx_export import INPUTS, OUTPUT, export_onnx
from stereokit.errors import StereokitError
from stereokit.models.postprocess import DeployModel
from stereokit.quant.fold import export_copy
from stereokit.runs import StageRecord, artifact, atomic_write_bytes, finish_stage, read_stage_record, require_stage, run_config, stage_dir, write_stage_record
from stereokit.services.stages import float_model, quant_model

# Which stage directory an export writes, by the stage it starts from.
EXPORT_STAGE = {"qat": "export", "calibration": "export", "float": "export_float"}


class ExportResult(BaseModel):
    source: str
    model: Path
    bytes: int
    input_shape: list[int]
    opset: int
    op_counts: dict[str, int]


def split_stage_path(path: Path) -> tuple[Path, str]:
    """RUN/qat -> (RUN, "qat"); refuses anything that is not a stage directory of a run."""
    path = Path(path)
    stage = path.name
    if stage not in EXPORT_STAGE:
        raise StereokitError(f"{path}: not a float, calibration or qat stage directory (e.g. runs/sf/qat).")
    return path.parent, stage


def deploy_metadata(cfg: StereokitConfig, source: str, source_sha: str) -> dict[str, str]:
    return {
        "stereokit_version": __version__,
        "source_stage": source,
        "source_sha256": source_sha,
        "config_hash": config_hash(cfg),
        "inputs": ",".join(INPUTS),
        "output": OUTPUT,
        "input_layout": "NCHW",
        "input_colour": "YUV444 (BT.601, OpenCV COLOR_BGR2YUV)" + (" from RGB" if cfg.data.rgb_input else " from BGR"),
        "input_normalisation": f"(x - {cfg.data.mean:g}) / {cfg.data.std:g}",
        "mean": str(cfg.data.mean),
        "std": str(cfg.data.std),
        "rgb_input": "true" if cfg.data.rgb_input else "false",
        "input_shape": f"1x3x{cfg.deploy.input_height}x{cfg.deploy.input_width}",
        "output_unit": "disparity in pixels, clipped to [0, maxdisp]",
        "maxdisp": str(cfg.model.maxdisp),
        "quantized": "true" if source != "float" else "false",
    }


def run_export(stage_path: Path, force: bool = False) -> ExportResult:
    run_dir, source = split_stage_path(stage_path)
    cfg = run_config(run_dir)
    record_in = require_stage(run_dir, source)
    checkpoint = stage_dir(run_dir, source) / ("checkpoint.pt" if source == "calibration" else "best.pt")
    target = EXPORT_STAGE[source]
    out = stage_dir(run_dir, target)
    if read_stage_record(run_dir, target) is not None and not force:
        raise StereokitError(f"{out}: an export is already here; pass --force to replace it.")
    if source == "float":
        model: nn.Module = DeployModel(float_model(cfg, checkpoint))
    else:
        model = DeployModel(export_copy(quant_model(cfg, checkpoint)))
    source_art = artifact(run_dir, checkpoint)
    data = export_onnx(model, cfg.deploy.input_height, cfg.deploy.input_width, cfg.deploy.opset,
                       deploy_metadata(cfg, source, source_art.sha256))
    record = StageRecord(stage=target, config_hash=config_hash(cfg), inputs=[source_art])
    write_stage_record(run_dir, record)
    path = out / "model.onnx"
    atomic_write_bytes(path, data)
    proto = onnx.load_from_string(data)
    counts: dict[str, int] = {}
    for node in proto.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    manifest = {
        "inputs": {name: [1, 3, cfg.deploy.input_height, cfg.deploy.input_width] for name in INPUTS},
        "output": {OUTPUT: [1, 1, cfg.deploy.input_height, cfg.deploy.input_width]},
        "metadata": {p.key: p.value for p in proto.metadata_props},
        "source_record_finished": record_in.finished,
    }
    record.details.update(manifest)
    finish_stage(run_dir, record, [path], {"op_counts": counts, "bytes": len(data)})
    return ExportResult(source=source, model=path, bytes=len(data), input_shape=[1, 3, cfg.deploy.input_height, cfg.deploy.input_width],
                        opset=cfg.deploy.opset, op_counts=counts)

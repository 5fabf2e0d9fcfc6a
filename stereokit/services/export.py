"""`stereokit export RUN/qat|RUN/float`: the quantized IR (QDQ ONNX) or a float ONNX for comparison."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
from pydantic import BaseModel
from torch import nn

from stereokit import __version__
from stereokit.config import StereokitConfig, deploy_size, stage_config_hash
from stereokit.deploy.ir import metadata
from stereokit.deploy.onnx_export import INPUTS, OUTPUT, export_onnx, output_quantization
from stereokit.errors import StereokitError
from stereokit.models.postprocess import DeployModel
from stereokit.quant.fold import export_copy
from stereokit.deploy.compiler import op_counts
from stereokit.lineage import clear_for_rerun, require_stage, stage_lock
from stereokit.runs import StageRecord, recorded_artifact, atomic_write_bytes, finish_stage, run_config, stage_dir, write_stage_record
from stereokit.services.stages import float_model, quant_model, source_checkpoint

# Which stage directory an export writes, by the stage it starts from.
EXPORT_STAGE = {"qat": "export", "calibration": "export", "float": "export_float"}


class ExportResult(BaseModel):
    source: str
    model: Path
    bytes: int
    input_shape: list[int]
    opset: int
    op_counts: dict[str, int]
    output_dtype: str = "float"
    output_step_px: float | None = None
    moved_aside: list[str] = []


def split_stage_path(path: Path) -> tuple[Path, str]:
    """RUN/qat -> (RUN, "qat"); refuses anything that is not a stage directory of a run."""
    path = Path(path)
    stage = path.name
    if stage not in EXPORT_STAGE:
        raise StereokitError(f"{path}: not a float, calibration or qat stage directory (e.g. runs/sf/qat).")
    return path.parent, stage


def deploy_metadata(cfg: StereokitConfig, source: str, source_sha: str, size: tuple[int, int]) -> dict[str, str]:
    return {
        "stereokit_version": __version__,
        "source_stage": source,
        "source_sha256": source_sha,
        "config_hash": stage_config_hash(cfg, "export"),
        "inputs": ",".join(INPUTS),
        "output": OUTPUT,
        "input_layout": "NCHW",
        "input_colour": "YUV444 (BT.601, OpenCV COLOR_BGR2YUV)" + (" from RGB" if cfg.data.rgb_input else " from BGR"),
        "input_normalisation": f"(x - {cfg.data.mean:g}) / {cfg.data.std:g}",
        "mean": str(cfg.data.mean),
        "std": str(cfg.data.std),
        "rgb_input": "true" if cfg.data.rgb_input else "false",
        "input_shape": f"1x3x{size[0]}x{size[1]}",
        "output_unit": "disparity in pixels, clipped to [0, maxdisp]",
        "maxdisp": str(cfg.model.maxdisp),
        "quantized": "true" if source != "float" else "false",
        # the precision islands travel with the IR, so a copied .onnx checks and compiles the same
        "int16_modules": json.dumps(cfg.quant.int16_modules if source != "float" else []),
        "float_modules": json.dumps(cfg.quant.float_modules if source != "float" else []),
    }


def run_export(stage_path: Path, force: bool = False, height: int | None = None, width: int | None = None) -> ExportResult:
    """`height`/`width`: the IR's static input size (default the run's deploy.input_*): the size the
    camera delivers, padded to a multiple of 32, so that no pair is resized to fit it."""
    run_dir, source = split_stage_path(stage_path)
    cfg = run_config(run_dir)
    h, w = deploy_size(cfg.deploy, height, width)
    record_in = require_stage(run_dir, source)
    checkpoint = source_checkpoint(run_dir, source)
    source_art = recorded_artifact(run_dir, record_in, checkpoint)
    target = EXPORT_STAGE[source]
    out = stage_dir(run_dir, target)
    if source == "float":
        model: nn.Module = DeployModel(float_model(cfg, checkpoint))
    else:
        model = DeployModel(export_copy(quant_model(cfg, checkpoint)))
    data = export_onnx(model, h, w, cfg.deploy.opset, deploy_metadata(cfg, source, source_art.sha256, (h, w)))
    moved = clear_for_rerun(run_dir, target, force, what="an export")
    record = StageRecord(stage=target, config_hash=stage_config_hash(cfg, target), inputs=[source_art])
    path = out / "model.onnx"
    with stage_lock(run_dir, target):
        write_stage_record(run_dir, record)
        atomic_write_bytes(path, data)
        counts = op_counts(data)
        proto = onnx.load_from_string(data)
        grid = output_quantization(proto)
        out_dtype, step = (grid[0], grid[1] * cfg.model.maxdisp) if grid else ("float", None)
        record.details.update({
            "inputs": {name: [1, 3, h, w] for name in INPUTS},
            "output": {OUTPUT: [1, 1, h, w]},
            "metadata": metadata(proto),
            "source_record_finished": record_in.finished,
            "output_dtype": out_dtype,
            "output_step_px": step,
        })
        finish_stage(run_dir, record, [path], {"op_counts": counts, "bytes": len(data)})
    return ExportResult(source=source, model=path, bytes=len(data), input_shape=[1, 3, h, w],
                        opset=cfg.deploy.opset, op_counts=counts, output_dtype=out_dtype, output_step_px=step, moved_aside=moved)

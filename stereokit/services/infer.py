"""`stereokit infer`: disparity and depth for one stereo pair, from any stage's artifact
(.hbm, .onnx, or a run's stage directory with a checkpoint)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from stereokit.camera.depth import UNIT_METRES, depth_from_disparity, depth_to_mm, encode_ply, point_cloud
from stereokit.camera.rectify import Rectifier
from stereokit.camera.rig import Rig, load_rig, rig_hash
from stereokit.data.pairs import read_pair
from stereokit.data.pfm import encode_pfm
from stereokit.engine.plots import colorize, depth_colour, depth_picture, png_bytes
from stereokit.errors import StereokitError
from stereokit.paths import folder_to_write
from stereokit.runs import atomic_write_bytes, atomic_write_text
from stereokit.services.predictors import open_predictor
from stereokit.services.rectify import check_size


class InferResult(BaseModel):
    model: str
    size: list[int]
    handling: str
    provider: str
    disparity_min: float
    disparity_max: float
    depth_median: float | None  # in `unit`
    outputs: dict[str, str]
    rig: str | None = None
    rig_sha256: str | None = None
    focal_px: float | None = None
    baseline: float | None = None
    unit: str | None = None


@dataclass(frozen=True)
class Geometry:
    """What turns disparity into depth and points: f, B, the principal point, the unit of B."""

    focal_px: float
    baseline: float
    cx: float
    cy: float
    unit: str

    @classmethod
    def of_rig(cls, rig: Rig) -> "Geometry":
        return cls(rig.focal_px, rig.baseline, float(rig.P1[0][2]), float(rig.P1[1][2]), rig.unit)


def range_note(disp: np.ndarray, maxdisp: float) -> str | None:
    """One line when the scene is nearer than the model was trained for (disparities pile up at maxdisp)."""
    if maxdisp and float((disp >= 0.95 * maxdisp).mean()) > 0.01:
        return (f"{(disp >= 0.95 * maxdisp).mean():.0%} of pixels reach the model's largest disparity ({maxdisp:.0f} px at the "
                "pair's size): parts of the scene are nearer than it was trained for; downscale the pair (--scale) or train "
                "with a larger maxdisp")
    return None


def parse_model_inputs(text: str) -> dict[str, str]:
    """`imgl:L,imgr:R,baseline:B,f:F` (the reference tool's form) -> a dict; baseline and f must be numbers."""
    values: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition(":")
        if not sep or key not in ("imgl", "imgr", "baseline", "f"):
            raise StereokitError(f"--model-inputs: '{part}' is not one of imgl:PATH, imgr:PATH, baseline:M, f:PX.")
        if key in ("baseline", "f"):
            try:
                float(value)
            except ValueError:
                raise StereokitError(f"--model-inputs: {key} '{value}' is not a number.") from None
        values[key] = value
    return values


def _disparity_outputs(out: Path, disp: np.ndarray, maxdisp: float) -> tuple[dict[str, str], np.ndarray]:
    atomic_write_bytes(out / "disparity.pfm", encode_pfm(disp))
    atomic_write_bytes(out / "disparity.png", png_bytes(np.clip(disp * 256.0, 0, 65535).astype(np.uint16)))
    colour = colorize(disp, maxdisp or float(disp.max()))
    atomic_write_bytes(out / "disparity_color.png", png_bytes(colour))
    return {"disparity_pfm": str(out / "disparity.pfm"), "disparity_png16": str(out / "disparity.png"),
            "disparity_color": str(out / "disparity_color.png")}, colour


def _depth_outputs(out: Path, left: np.ndarray, depth: np.ndarray, geometry: Geometry, max_depth: float | None) -> dict[str, str]:
    """depth.pfm (the baseline's unit), depth_mm.png (uint16 mm, 0 = invalid), depth.png, cloud.ply."""
    atomic_write_bytes(out / "depth.pfm", encode_pfm(depth))
    atomic_write_bytes(out / "depth_mm.png", png_bytes(depth_to_mm(depth, UNIT_METRES[geometry.unit], max_depth)))
    atomic_write_bytes(out / "depth.png", depth_picture(depth, geometry.unit))
    points, colours = point_cloud(depth, left, geometry.focal_px, geometry.cx, geometry.cy, max_depth)
    atomic_write_bytes(out / "cloud.ply", encode_ply(points, colours))
    return {"depth_pfm": str(out / "depth.pfm"), "depth_mm_png": str(out / "depth_mm.png"),
            "depth_png": str(out / "depth.png"), "cloud_ply": str(out / "cloud.ply")}


def _check_flags(baseline: float | None, focal: float | None, rig: Path | None, max_depth: float | None) -> None:
    if rig is not None and (baseline is not None or focal is not None):
        raise StereokitError("--rig gives f and the baseline; leave out --baseline and --f.")
    if (baseline is None) != (focal is None):
        missing = "--f" if focal is None else "--baseline"
        raise StereokitError(f"{missing}: depth needs both --baseline (m) and --f (px); give both or neither.")
    for flag, value in (("--baseline", baseline), ("--f", focal), ("--max-depth", max_depth)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise StereokitError(f"{flag}: {value} must be a positive finite number.")


def run_infer(model: Path | str | None, imgl: Path, imgr: Path, save_path: Path, baseline: float | None = None,
              focal: float | None = None, provider: str = "auto", rig: Path | None = None,
              max_depth: float | None = None, scale: float | None = None, raw: bool = False,
              multiscale: bool = False) -> InferResult:
    _check_flags(baseline, focal, rig, max_depth)
    the_rig = load_rig(rig) if rig is not None else None
    out = folder_to_write(Path(save_path), "--save-path")
    left, right = read_pair(imgl, imgr)
    geometry: Geometry | None = None
    if the_rig is not None:
        check_size(the_rig, left, Path(imgl))
        left, right = Rectifier.of(the_rig)(left, right)
        geometry = Geometry.of_rig(the_rig)
    elif baseline is not None and focal is not None:
        geometry = Geometry(focal_px=focal, baseline=baseline, cx=(left.shape[1] - 1) / 2, cy=(left.shape[0] - 1) / 2, unit="m")
    predictor = open_predictor(model, provider, scale)
    predictor.raw, predictor.multiscale = raw, multiscale
    disp, handling = predictor(left, right)
    maxdisp, ran_on = predictor.maxdisp / predictor.last_scale, predictor.ran_on  # in the pair's pixels
    notes = [handling] + ([note] if (note := range_note(disp, maxdisp)) else [])
    out.mkdir(parents=True, exist_ok=True)
    outputs, disp_colour = _disparity_outputs(out, disp, maxdisp)
    if the_rig is not None:
        atomic_write_bytes(out / "left_rectified.png", png_bytes(left))
        outputs["left_rectified"] = str(out / "left_rectified.png")
    panels = [left, disp_colour]
    depth_median = None
    if geometry is not None:
        depth = depth_from_disparity(disp, geometry.baseline, geometry.focal_px)
        outputs.update(_depth_outputs(out, left, depth, geometry, max_depth))
        valid = depth[depth > 0]
        depth_median = float(np.median(valid)) if valid.size else None
        panels.append(depth_colour(depth))
    atomic_write_bytes(out / "side_by_side.png", png_bytes(np.concatenate(panels, axis=1)))
    outputs["side_by_side"] = str(out / "side_by_side.png")
    result = InferResult(model=predictor.name, size=[left.shape[0], left.shape[1]], handling="; ".join(notes), provider=ran_on,
                         disparity_min=float(disp.min()), disparity_max=float(disp.max()),
                         depth_median=depth_median, outputs=outputs,
                         rig=str(rig) if rig is not None else None, rig_sha256=rig_hash(rig) if rig is not None else None,
                         focal_px=geometry.focal_px if geometry else None, baseline=geometry.baseline if geometry else None,
                         unit=geometry.unit if geometry else None)
    atomic_write_text(out / "infer.json", json.dumps(result.model_dump(), indent=2))
    return result

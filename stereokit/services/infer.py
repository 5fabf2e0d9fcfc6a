"""`stereokit infer`: disparity and depth for one stereo pair, from any stage's artifact
(.hbm, .onnx, or a run's stage directory with a checkpoint)."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel

from stereokit.config import DataConfig
from stereokit.data.pfm import encode_pfm
from stereokit.data.sceneflow import decode_image, read_image_bytes
from stereokit.data.transforms import preprocess_image
from stereokit.deploy.hbm import load_hbm
from stereokit.deploy.onnx_export import read_metadata
from stereokit.deploy.runtime import Runtime, open_compiled, open_onnx
from stereokit.engine.evaluate import torch_predictor
from stereokit.engine.plots import colorize
from stereokit.errors import StereokitError
from stereokit.paths import folder_to_write
from stereokit.runs import atomic_write_bytes, atomic_write_text, run_config
from stereokit.models.inference import prepare_for_inference
from stereokit.services.stages import SOURCE, load_stage_model, stage_checkpoint


class InferResult(BaseModel):
    model: str
    size: list[int]
    handling: str
    provider: str
    disparity_min: float
    disparity_max: float
    depth_median_m: float | None
    outputs: dict[str, str]


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


def read_image(path: Path) -> np.ndarray:
    return decode_image(read_image_bytes(Path(path)), str(path))


def _normalisation(meta: dict[str, str], name: Path) -> DataConfig:
    """The input normalisation the model was trained with, from its own metadata (never guessed)."""
    missing = [k for k in ("mean", "std", "rgb_input") if k not in meta]
    if missing:
        raise StereokitError(f"{name}: its metadata lacks {', '.join(missing)}, so its input normalisation is unknown; "
                             "make it with 'stereokit export' or 'stereokit compile'.")
    try:
        mean, std = float(meta["mean"]), float(meta["std"])
    except (TypeError, ValueError):
        raise StereokitError(f"{name}: its mean/std metadata ({meta['mean']!r}, {meta['std']!r}) are not numbers.") from None
    if not (math.isfinite(mean) and math.isfinite(std) and std > 0):
        raise StereokitError(f"{name}: its mean/std metadata ({mean}, {std}) are not a usable normalisation.")
    return DataConfig(mean=mean, std=std, rgb_input=str(meta["rgb_input"]) == "true")


def _fixed_shape_predict(runtime: Runtime, left: torch.Tensor, right: torch.Tensor) -> tuple[np.ndarray, str]:
    """Pad to the model's shape when the image fits, else resize and rescale the disparity."""
    h, w = left.shape[-2:]
    if h <= runtime.height and w <= runtime.width:
        pad = (0, runtime.width - w, 0, runtime.height - h)
        l, r = (F.pad(t, pad, mode="replicate") for t in (left, right))
        disp = runtime(l.numpy(), r.numpy())[0, 0, :h, :w]
        if (h, w) == (runtime.height, runtime.width):
            return disp, f"{w}x{h}: the model's own input size"
        return disp, f"padded {w}x{h} to the model's {runtime.width}x{runtime.height} and cropped back"
    size = (runtime.height, runtime.width)
    l, r = (F.interpolate(t, size=size, mode="bilinear", align_corners=False) for t in (left, right))
    small = runtime(l.numpy(), r.numpy())
    scale = w / runtime.width
    disp = F.interpolate(torch.from_numpy(small), size=(h, w), mode="bilinear", align_corners=False)[0, 0].numpy() * scale
    return disp, f"resized {w}x{h} to the model's {runtime.width}x{runtime.height}; disparity scaled by {scale:.4f}"


def predict_pair(model_path: Path, left_bgr: np.ndarray, right_bgr: np.ndarray,
                 provider: str = "auto") -> tuple[np.ndarray, str, float, str]:
    """-> (disparity in pixels HxW, how the size was handled, maxdisp, what ran it)."""
    model_path = Path(model_path)
    if model_path.suffix in (".hbm", ".onnx") and not model_path.is_file():
        raise StereokitError(f"{model_path}: model not found" + (" (it is a directory)." if model_path.is_dir() else "."))
    if model_path.suffix == ".hbm":
        preprocessing = load_hbm(model_path).manifest.get("preprocessing")
        norm = _normalisation(preprocessing if isinstance(preprocessing, dict) else {}, model_path)
        runtime = open_compiled(model_path, provider)
    elif model_path.suffix == ".onnx":
        try:
            meta = read_metadata(model_path)
        except Exception:  # noqa: BLE001 - protobuf raises several types on damaged input
            raise StereokitError(f"{model_path}: not a readable ONNX model.") from None
        norm = _normalisation(meta, model_path)
        runtime = open_onnx(model_path, meta.get("maxdisp"), provider)
    elif model_path.is_dir() and model_path.name in SOURCE and (model_path.parent / "config.yaml").is_file():
        cfg = run_config(model_path.parent)
        stage = model_path.name
        checkpoint = stage_checkpoint(model_path.parent, stage)
        model = prepare_for_inference(load_stage_model(cfg, stage, checkpoint))
        left, right = preprocess_image(left_bgr, cfg.data), preprocess_image(right_bgr, cfg.data)
        with torch.no_grad():
            disp = torch_predictor(model, cfg.model.maxdisp)(left, right)[0, 0].numpy()
        return disp, f"any size: padded to a multiple of 32 and cropped back ({stage} model, torch)", float(cfg.model.maxdisp), "torch"
    else:
        raise StereokitError(f"{model_path}: not a .hbm, an .onnx, or a run's float/calibration/qat directory.")
    left, right = preprocess_image(left_bgr, norm), preprocess_image(right_bgr, norm)
    disp, handling = _fixed_shape_predict(runtime, left, right)
    return disp, handling, runtime.maxdisp, runtime.provider


def depth_from_disparity(disp: np.ndarray, baseline: float, focal: float) -> np.ndarray:
    """depth = f * baseline / disparity in metres; 0 where the disparity is 0 (no match)."""
    with np.errstate(divide="ignore"):
        return np.where(disp > 0, focal * baseline / np.maximum(disp, 1e-6), 0.0).astype(np.float32)


def depth_picture(depth: np.ndarray) -> bytes:
    """A coloured depth map with a legend in metres (matplotlib colour bar)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    valid = depth[depth > 0]
    vmax = float(np.percentile(valid, 98)) if valid.size else 1.0
    h, w = depth.shape
    fig, ax = plt.subplots(figsize=(max(4.0, w / 100 + 1.2), max(3.0, h / 100)), dpi=100)
    vmin = float(np.percentile(valid, 2)) if valid.size else 0.0
    image = ax.imshow(np.where(depth > 0, depth, np.nan), cmap="turbo_r", vmin=vmin, vmax=vmax)
    ax.set_axis_off()
    fig.colorbar(image, ax=ax, label="depth (m)", fraction=0.046, pad=0.02)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _png(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise StereokitError("could not encode a picture.", exit_code=1)
    return data.tobytes()


def run_infer(model: Path, imgl: Path, imgr: Path, save_path: Path, baseline: float | None = None,
              focal: float | None = None, provider: str = "auto") -> InferResult:
    if (baseline is None) != (focal is None):
        missing = "--f" if focal is None else "--baseline"
        raise StereokitError(f"{missing}: depth needs both --baseline (m) and --f (px); give both or neither.")
    for flag, value in (("--baseline", baseline), ("--f", focal)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise StereokitError(f"{flag}: {value} must be a positive finite number.")
    out = folder_to_write(Path(save_path), "--save-path")
    left, right = read_image(imgl), read_image(imgr)
    if left.shape != right.shape:
        raise StereokitError(f"{imgr}: {right.shape[1]}x{right.shape[0]} differs from the left image's {left.shape[1]}x{left.shape[0]}.")
    disp, handling, maxdisp, ran_on = predict_pair(model, left, right, provider)
    out.mkdir(parents=True, exist_ok=True)
    outputs: dict[str, str] = {}
    atomic_write_bytes(out / "disparity.pfm", encode_pfm(disp))
    outputs["disparity_pfm"] = str(out / "disparity.pfm")
    atomic_write_bytes(out / "disparity.png", _png(np.clip(disp * 256.0, 0, 65535).astype(np.uint16)))
    outputs["disparity_png16"] = str(out / "disparity.png")
    disp_colour = colorize(disp, maxdisp or float(disp.max()))
    atomic_write_bytes(out / "disparity_color.png", _png(disp_colour))
    outputs["disparity_color"] = str(out / "disparity_color.png")
    panels = [left, disp_colour]
    depth_median = None
    if baseline is not None and focal is not None:
        depth = depth_from_disparity(disp, baseline, focal)
        buf = io.BytesIO()
        np.save(buf, depth)
        atomic_write_bytes(out / "depth.npy", buf.getvalue())
        atomic_write_bytes(out / "depth.png", depth_picture(depth))
        outputs.update({"depth_npy": str(out / "depth.npy"), "depth_png": str(out / "depth.png")})
        valid = depth[depth > 0]
        depth_median = float(np.median(valid)) if valid.size else None
        vmax = float(np.percentile(valid, 98)) if valid.size else 1.0
        panels.append(colorize(np.where(depth > 0, vmax - np.minimum(depth, vmax), np.nan), vmax))
    atomic_write_bytes(out / "side_by_side.png", _png(np.concatenate(panels, axis=1)))
    outputs["side_by_side"] = str(out / "side_by_side.png")
    result = InferResult(model=str(model), size=[left.shape[0], left.shape[1]], handling=handling, provider=ran_on,
                         disparity_min=float(disp.min()), disparity_max=float(disp.max()),
                         depth_median_m=depth_median, outputs=outputs)
    atomic_write_text(out / "infer.json", json.dumps(result.model_dump(), indent=2))
    return result

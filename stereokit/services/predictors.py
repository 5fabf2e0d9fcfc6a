"""A model given on the command line (--model: a .hbm, an .onnx, a run's stage directory) opened once
as a predictor of BGR pairs: what infer, eval on a benchmark and the benchmarks call."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from stereokit.config import DataConfig
from stereokit.data.transforms import preprocess_image
from stereokit.deploy.hbm import load_hbm
from stereokit.deploy.ir import read_metadata
from stereokit.deploy.runtime import Runtime, open_compiled, open_onnx
from stereokit.engine.input_scale import (MULTISCALE_FACTORS, choose_scale, disparity_back, reach, resize_view, scaled_size,
                                          within_fit)
from stereokit.engine.evaluate import torch_predictor
from stereokit.engine.checkpoint import load_model_weights
from stereokit.engine.cleanup import clean_disparity
from stereokit.errors import StereokitError
from stereokit.models import build_stereonet
from stereokit.models.inference import prepare_for_inference
from stereokit.models.postprocess import pad_to_size
from stereokit.runs import run_config
from stereokit.services.stages import SOURCE, load_stage_model, stage_checkpoint
from stereokit.weights import Weights, load_shipped, resolve_weights, shipped_names

DEFAULT_SHIPPED = "shipped"


@dataclass
class PairPredictor:
    """BGR uint8 pair of any size -> (disparity in pixels at that size, how the size was handled).

    `run` takes the pair at the size it is given; `scale` says at which size to give it: None runs
    it where the model is accurate (stereokit/engine/input_scale.py), a number resizes by that factor.
    `fit` is the input size (h, w) of a fixed-shape model, past which upscaling gains nothing;
    `last_scale` the factor the last pair ran at (its largest disparity is maxdisp / last_scale).
    `raw`: hand the network's map over as it comes, not cleaned (stereokit/engine/cleanup.py);
    `multiscale`: the median of passes at MULTISCALE_FACTORS times the scale (input_scale.py)."""

    name: str
    maxdisp: float
    ran_on: str
    run: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, str]]
    scale: float | None = None
    fit: tuple[int, int] | None = None
    last_scale: float = 1.0
    raw: bool = False
    multiscale: bool = False

    def __call__(self, left_bgr: np.ndarray, right_bgr: np.ndarray) -> tuple[np.ndarray, str]:
        disp, how = self._at_scale(left_bgr, right_bgr)
        if self.raw:
            return disp, how
        return clean_disparity(disp), f"{how}; cleaned (the strip the right view cannot see raised, a 3x3 median)"

    def _at_scale(self, left_bgr: np.ndarray, right_bgr: np.ndarray) -> tuple[np.ndarray, str]:
        self.last_scale = 1.0
        if self.scale == 1.0 and not self.multiscale:
            return self.run(left_bgr, right_bgr)
        h, w = left_bgr.shape[:2]
        first = None
        if self.scale is None:
            first, how = self.run(left_bgr, right_bgr)
            u = choose_scale(first, self.maxdisp, self.fit)
            note = f"auto scale {u:.2f}: its disparities reach {reach(first):.0f} px of the model's {self.maxdisp:g}"
            if u == 1.0 and not self.multiscale:
                return first, f"{how}; {note}"
        else:
            u, note = self.scale, f"--scale {self.scale:g}"
        size = scaled_size(h, w, u)
        self.last_scale = size[1] / w
        if not self.multiscale:
            disp, how = self.run(resize_view(left_bgr, size), resize_view(right_bgr, size))
            return disparity_back(disp, (h, w)), f"resized {w}x{h} to {size[1]}x{size[0]} ({note}), then {how}"
        maps, sizes = [], []
        for factor in MULTISCALE_FACTORS:
            size = scaled_size(h, w, within_fit(u * factor, (h, w), self.fit))
            if size == (h, w) and first is not None:
                maps.append(first)  # the first pass already ran the pair at this size
            else:
                disp, how = self.run(resize_view(left_bgr, size), resize_view(right_bgr, size))
                maps.append(disparity_back(disp, (h, w)))
            sizes.append(f"{size[1]}x{size[0]}")
        return (np.median(np.stack(maps), axis=0).astype(np.float32),
                f"median of {len(maps)} passes at {', '.join(sizes)} ({note}, x {' / '.join(f'{f:g}' for f in MULTISCALE_FACTORS)}); the last pass {how}")


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


def _fixed_shape_predict(runtime: Runtime | _TorchAtShape, left: torch.Tensor, right: torch.Tensor) -> tuple[np.ndarray, str]:
    """Pad to the model's shape when the image fits, else resize and rescale the disparity."""
    h, w = left.shape[-2:]
    if h <= runtime.height and w <= runtime.width:
        l, r = (pad_to_size(t, runtime.height, runtime.width) for t in (left, right))
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


@dataclass
class _TorchAtShape:
    """A torch model called as a fixed-shape runtime is (normalised numpy [1,3,H,W] in, pixels out), so
    _fixed_shape_predict pads its input exactly as it pads a compiled model's."""

    predict: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    height: int
    width: int

    def __call__(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.predict(torch.from_numpy(left), torch.from_numpy(right)).numpy()


def _torch_pair_predictor(name: str, model: torch.nn.Module, cfg_data: DataConfig, maxdisp: int, what: str,
                          scale: float | None, fit: tuple[int, int] | None = None) -> PairPredictor:
    predict = torch_predictor(model, maxdisp)

    def run(left_bgr: np.ndarray, right_bgr: np.ndarray) -> tuple[np.ndarray, str]:
        left, right = preprocess_image(left_bgr, cfg_data), preprocess_image(right_bgr, cfg_data)
        if fit is not None:
            disp, how = _fixed_shape_predict(_TorchAtShape(predict, *fit), left, right)
            return disp, f"{how} ({what}, torch)"
        with torch.no_grad():
            disp = predict(left, right)[0, 0].numpy()
        h, w = left_bgr.shape[:2]
        padded = f"padded {w}x{h} to {-(-w // 32) * 32}x{-(-h // 32) * 32} (a multiple of 32) and cropped back" if (h % 32 or w % 32) else f"{w}x{h}, a multiple of 32"
        return disp, f"{padded} ({what}, torch)"

    return PairPredictor(name, float(maxdisp), "torch", run, scale, fit)


def stage_predictor(run_dir: Path, stage: str, scale: float | None = None, fit: tuple[int, int] | None = None) -> PairPredictor:
    """A run's stage (float, calibration, qat, or int_infer: the integer model) in torch, its chain verified.
    `fit` (h, w): run it as a model compiled at that size runs (padded to it), to compare the two."""
    cfg = run_config(run_dir)
    checkpoint = stage_checkpoint(run_dir, stage)
    model = prepare_for_inference(load_stage_model(cfg, stage, checkpoint))
    return _torch_pair_predictor(str(Path(run_dir) / stage), model, cfg.data, cfg.model.maxdisp, f"{stage} model", scale, fit)


def weights_predictor(weights: Weights, scale: float | None = None, fit: tuple[int, int] | None = None) -> PairPredictor:
    """A weights file (a shipped model) as a float torch model (`fit`: as stage_predictor's)."""
    model = build_stereonet(weights.model)
    load_model_weights(model, weights.state_dict, weights.path)
    return _torch_pair_predictor(weights.name, prepare_for_inference(model), weights.data, weights.model.maxdisp,
                                 f"{weights.name} weights, float", scale, fit)


def open_predictor(model_path: Path | str | None = None, provider: str = "auto", scale: float | None = None) -> PairPredictor:
    """The model behind --model, loaded once: a shipped model's name (None: the default shipped model),
    a weights .pt, a .hbm, an .onnx or a stage directory; one sentence when it is none of these.
    `scale`: None runs each pair at the scale the model is accurate at, a number at that factor."""
    if model_path is None:
        return weights_predictor(load_shipped(DEFAULT_SHIPPED), scale)
    if str(model_path) in shipped_names() and not Path(model_path).exists():
        return weights_predictor(load_shipped(str(model_path)), scale)
    model_path = Path(model_path)
    if model_path.suffix == ".pt" or not model_path.exists() and not model_path.suffix:
        return weights_predictor(resolve_weights(model_path), scale)
    if model_path.suffix in (".hbm", ".onnx") and not model_path.is_file():
        raise StereokitError(f"{model_path}: model not found" + (" (it is a directory)." if model_path.is_dir() else "."))
    if model_path.suffix == ".hbm":
        preprocessing = load_hbm(model_path).manifest.get("preprocessing")
        norm = _normalisation(preprocessing if isinstance(preprocessing, dict) else {}, model_path)
        runtime = open_compiled(model_path, provider)
    elif model_path.suffix == ".onnx":
        meta = read_metadata(model_path)
        norm = _normalisation(meta, model_path)
        runtime = open_onnx(model_path, meta.get("maxdisp"), provider)
    elif model_path.is_dir() and model_path.name in SOURCE and (model_path.parent / "config.yaml").is_file():
        return stage_predictor(model_path.parent, model_path.name, scale)
    else:
        raise StereokitError(f"{model_path}: not a shipped model name, a weights .pt, a .hbm, an .onnx, or a run's float/calibration/qat directory.")

    def run(left_bgr: np.ndarray, right_bgr: np.ndarray) -> tuple[np.ndarray, str]:
        return _fixed_shape_predict(runtime, preprocess_image(left_bgr, norm), preprocess_image(right_bgr, norm))

    return PairPredictor(str(model_path), float(runtime.maxdisp), runtime.provider, run, scale, (runtime.height, runtime.width))

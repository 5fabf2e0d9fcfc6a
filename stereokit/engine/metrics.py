"""EPE and bad-k as the reference computes them, reducible over any batching and any DDP ranks.

Per image: EPE = mean |pred - gt| over valid pixels (0 < gt < maxdisp); bad-k = share of valid
pixels with error > k. The reported value is the mean over images. Results are kept per image,
keyed by the sample index, so the DistributedSampler's padding duplicates count once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

from stereokit.data.validity import valid_mask


def per_image_errors(pred: Tensor, gt: Tensor, maxdisp: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """pred, gt: [B,1,H,W] pixels -> (epe, bad1, bad3, valid pixels), each [B]."""
    mask = valid_mask(gt, maxdisp).flatten(1)
    err = (pred.float() - gt.float()).abs().flatten(1)
    err = torch.where(mask, err, torch.zeros_like(err))
    pixels = mask.sum(1)
    denom = pixels.clamp(min=1).to(err.dtype)
    epe = err.sum(1) / denom
    bad1 = ((err > 1) & mask).sum(1) / denom
    bad3 = ((err > 3) & mask).sum(1) / denom
    return epe, bad1, bad3, pixels


@dataclass
class StereoMetrics:
    """Accumulates per-image results; `summary()` is the mean over images that have valid pixels."""

    maxdisp: int
    images: dict[int, tuple[float, float, float, int]] = field(default_factory=dict)

    def update(self, pred: Tensor, gt: Tensor, indices: Tensor) -> None:
        epe, bad1, bad3, pixels = per_image_errors(pred, gt, self.maxdisp)
        for i, e, b1, b3, n in zip(indices.tolist(), epe.tolist(), bad1.tolist(), bad3.tolist(), pixels.tolist()):
            if n > 0:
                self.images[int(i)] = (e, b1, b3, int(n))

    def gather(self) -> None:
        """Merge every rank's images into every rank (duplicates from sampler padding collapse)."""
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        parts: list[dict[int, tuple[float, float, float, int]]] = [{} for _ in range(dist.get_world_size())]
        dist.all_gather_object(parts, self.images)
        merged: dict[int, tuple[float, float, float, int]] = {}
        for part in parts:
            merged.update(part)
        self.images = merged

    def summary(self) -> dict[str, float | int]:
        n = len(self.images)
        if n == 0:
            return {"epe": float("nan"), "bad1": float("nan"), "bad3": float("nan"), "pixels": 0, "images": 0}
        values = list(self.images.values())
        return {
            "epe": sum(v[0] for v in values) / n,
            "bad1": sum(v[1] for v in values) / n,
            "bad3": sum(v[2] for v in values) / n,
            "pixels": sum(v[3] for v in values),
            "images": n,
        }


# ---------------------------------------------------------------- real benchmarks
# Each benchmark's devkit counts over its own masks (all pixels with ground truth, and the
# non-occluded ones where it has them), not the 0 < gt < maxdisp of SceneFlow training:
#   bad-k = share of pixels with |error| > k px;  D1 (KITTI) = share with |error| > 3 px AND > 5% of gt.

BENCHMARK_KEYS = ("epe", "bad1", "bad2", "bad3", "d1_all")


def benchmark_counts(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Sums over one image's masked pixels: absolute error and each bad count, and the pixel count."""
    err = np.abs(pred.astype(np.float64) - gt.astype(np.float64))[mask]
    g = gt.astype(np.float64)[mask]
    return {"epe": float(err.sum()), "bad1": float((err > 1).sum()), "bad2": float((err > 2).sum()),
            "bad3": float((err > 3).sum()), "d1_all": float(((err > 3) & (err > 0.05 * g)).sum()), "pixels": float(err.size)}


@dataclass
class BenchmarkMetrics:
    """Per-image counts; `summary()` gives both reductions: the mean over images of each image's
    rate ("per_image", how SceneFlow EPE is reported here) and the rate over all pixels pooled
    ("pooled", how KITTI's devkit reports D1-all)."""

    images: list[dict[str, float]] = field(default_factory=list)

    def update(self, pred: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> dict[str, float]:
        counts = benchmark_counts(pred, gt, mask)
        if counts["pixels"] > 0:
            self.images.append(counts)
        return {k: counts[k] / max(counts["pixels"], 1) for k in BENCHMARK_KEYS}

    def summary(self) -> dict[str, float | int]:
        if not self.images:
            return {**{k: float("nan") for k in BENCHMARK_KEYS}, "pixels": 0, "images": 0,
                    "pooled": {k: float("nan") for k in BENCHMARK_KEYS}}
        per_image = {k: float(np.mean([c[k] / c["pixels"] for c in self.images])) for k in BENCHMARK_KEYS}
        total = sum(c["pixels"] for c in self.images)
        pooled = {k: sum(c[k] for c in self.images) / total for k in BENCHMARK_KEYS}
        return {**per_image, "pixels": int(total), "images": len(self.images), "pooled": pooled}

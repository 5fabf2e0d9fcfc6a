"""Multi-scale SmoothL1 over the coarse prediction and every refinement, at full resolution."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from stereokit.data.validity import valid_mask


def multiscale_loss(outputs: list[Tensor], gt: Tensor, maxdisp: int, weights: list[float]) -> Tensor:
    """sum_i w_i * SmoothL1(upsampled prediction_i, gt) over the valid pixels.

    gt: [B,1,H,W] disparity in pixels. Each prediction is bilinearly upsampled to H x W first.
    """
    if len(weights) != len(outputs):
        raise ValueError(f"{len(weights)} loss weights for {len(outputs)} outputs")
    mask = valid_mask(gt, maxdisp)
    if not mask.any():
        return sum(o.sum() * 0.0 for o in outputs)  # keeps the graph; nothing to learn from
    target = gt[mask]
    size = tuple(gt.shape[-2:])
    total = gt.new_zeros(())
    for weight, out in zip(weights, outputs):
        pred = F.interpolate(out, size=size, mode="bilinear", align_corners=False) * maxdisp
        total = total + weight * F.smooth_l1_loss(pred[mask], target, reduction="mean")
    return total

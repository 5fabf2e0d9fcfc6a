"""Self-supervised stereo losses: the left view against the right view warped by the predicted
disparity, for adapting a model to a camera without ground truth.

    photometric = 0.85 * (1 - SSIM) / 2 + 0.15 * |I_l - I_r(x - d)|      (per pixel, over colours)
    smoothness  = mean |dx d*| e^-|dx I| + |dy d*| e^-|dy I|,  d* = d / mean(d)   (edge-aware)
Pixels whose match falls outside the right image, and pixels where the right image unwarped already
matches better than warped (no texture to tell, or the occluded side of an object), are masked.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def warp_right_to_left(right: Tensor, disp: Tensor) -> tuple[Tensor, Tensor]:
    """The right image sampled at (x - d, y) for every left pixel, and the in-frame mask. right [B,C,H,W], disp [B,1,H,W] px."""
    b, _, h, w = right.shape
    xs = torch.arange(w, device=right.device, dtype=right.dtype).view(1, 1, w).expand(b, h, w) - disp[:, 0]
    ys = torch.arange(h, device=right.device, dtype=right.dtype).view(1, h, 1).expand(b, h, w)
    grid = torch.stack([2 * xs / max(w - 1, 1) - 1, 2 * ys / max(h - 1, 1) - 1], dim=-1)
    warped = F.grid_sample(right, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return warped, (xs >= 0).unsqueeze(1)


def ssim(x: Tensor, y: Tensor) -> Tensor:
    """Per-pixel SSIM over 3x3 windows (the self-supervised depth literature's form), [B,C,H,W] in [0, 1]."""
    c1, c2 = 0.01**2, 0.03**2
    pad = lambda t: F.pad(t, (1, 1, 1, 1), mode="reflect")  # noqa: E731
    mu_x, mu_y = F.avg_pool2d(pad(x), 3, 1), F.avg_pool2d(pad(y), 3, 1)
    sx = F.avg_pool2d(pad(x * x), 3, 1) - mu_x**2
    sy = F.avg_pool2d(pad(y * y), 3, 1) - mu_y**2
    sxy = F.avg_pool2d(pad(x * y), 3, 1) - mu_x * mu_y
    n = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    d = (mu_x**2 + mu_y**2 + c1) * (sx + sy + c2)
    return (n / d).clamp(-1, 1)


def photometric_error(a: Tensor, b: Tensor, alpha: float = 0.85) -> Tensor:
    """[B,1,H,W]: alpha (1 - SSIM) / 2 + (1 - alpha) L1, averaged over colours."""
    return (alpha * (1 - ssim(a, b)) / 2 + (1 - alpha) * (a - b).abs()).mean(1, keepdim=True)


def smoothness(disp: Tensor, image: Tensor) -> Tensor:
    d = disp / disp.mean(dim=(2, 3), keepdim=True).clamp(min=1e-3)
    dx, dy = (d[..., :, 1:] - d[..., :, :-1]).abs(), (d[..., 1:, :] - d[..., :-1, :]).abs()
    ix = (image[..., :, 1:] - image[..., :, :-1]).abs().mean(1, keepdim=True)
    iy = (image[..., 1:, :] - image[..., :-1, :]).abs().mean(1, keepdim=True)
    return (dx * torch.exp(-ix)).mean() + (dy * torch.exp(-iy)).mean()


def self_supervised_loss(left: Tensor, right: Tensor, disp: Tensor, smooth_weight: float = 0.1) -> tuple[Tensor, Tensor]:
    """(loss, photometric error over the kept pixels) for images in [0, 1] and a disparity in pixels."""
    warped, in_frame = warp_right_to_left(right, disp)
    error = photometric_error(left, warped)
    # auto-mask: keep pixels where warping explains the left view better than not moving at all
    keep = in_frame & (error < photometric_error(left, right))
    photo = (error * keep).sum() / keep.sum().clamp(min=1)
    return photo + smooth_weight * smoothness(disp, left), photo.detach()

"""From network output (normalised disparity at some scale) to disparity in pixels at full size."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stereokit.models.stereonet import StereoNet

MULTIPLE = 32


def pad_to_size(x: Tensor, height: int, width: int) -> Tensor:
    """Pad bottom/right with edge values up to height x width (a fixed-shape model's input); the
    prediction's top-left h x w is then the image's."""
    h, w = x.shape[-2:]
    return F.pad(x, (0, width - w, 0, height - h), mode="replicate") if (h, w) != (height, width) else x


def pad_to_multiple(x: Tensor, multiple: int = MULTIPLE) -> tuple[Tensor, tuple[int, int]]:
    """Pad so H and W are multiples of `multiple`; returns the pad."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    return pad_to_size(x, h + ph, w + pw), (ph, pw)


def to_pixels(disp: Tensor, size: tuple[int, int], maxdisp: int) -> Tensor:
    """Normalised [B,1,h,w] -> pixels [B,1,H,W] clipped to [0, maxdisp]."""
    if disp.shape[-2:] != torch.Size(size):
        disp = F.interpolate(disp, size=size, mode="bilinear", align_corners=False)
    return (disp * maxdisp).clamp(0, maxdisp)


def postprocess(outputs: list[Tensor], size: tuple[int, int], maxdisp: int, pad: tuple[int, int] = (0, 0)) -> Tensor:
    """The finest prediction in pixels, with the padding added before the network cropped off."""
    full = to_pixels(outputs[-1], size, maxdisp)
    h, w = size[0] - pad[0], size[1] - pad[1]
    return full[..., :h, :w]


@torch.no_grad()
def predict(model: StereoNet, imgl: Tensor, imgr: Tensor) -> Tensor:
    """Any-size normalised inputs -> disparity in pixels [B,1,H,W] at the input size."""
    left, pad = pad_to_multiple(imgl)
    right, _ = pad_to_multiple(imgr)
    return postprocess(model(left, right), tuple(left.shape[-2:]), model.cfg.maxdisp, pad)


class DeployModel(nn.Module):
    """The graph that gets exported: fixed-size inputs -> `disparity` in pixels at that size.

    `model` is a StereoNet or its quantized wrapper (anything with `.cfg` returning the maps).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, imgl: Tensor, imgr: Tensor) -> Tensor:
        return postprocess(self.model(imgl, imgr), tuple(imgl.shape[-2:]), self.model.cfg.maxdisp)

"""StereoNet, the reference toolchain's variant: neck, cost volume, 3D aggregation, soft-argmin,
hierarchical refinement. Built only from ops that quantize and export as static graphs:
convs, slices, concatenations, element-wise mul/add, softmax, average pooling and resize.

Disparity inside the network is normalised to [0, 1) (the soft-argmin weights are arange(D)/D),
so upsampling needs no rescaling and quantized ranges stay small; `postprocess` turns it into pixels.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from stereokit.config import ModelConfig
from stereokit.models.blocks import Functional, Requantized, ResBlock, conv_bn, float32_under_autocast


def res_stage(cin: int, cout: int, blocks: int, stride: int) -> nn.Sequential:
    """`blocks` residual blocks; the first changes resolution and width."""
    return nn.Sequential(ResBlock(cin, cout, stride=stride), *[ResBlock(cout, cout) for _ in range(blocks - 1)])


class StereoNetNeck(nn.Module):
    """Shared feature extractor: 3-conv stem (1/2), residual stages to 1/4, 1/8, 1/16, 1/16
    (the last two at 1/8 when the cost volume is at 1/8)."""

    def __init__(self, channels: list[int], blocks: list[int], cost_scale: int = 16) -> None:
        super().__init__()
        c0, c1, c2, c3, c4, c5 = channels
        self.stem = nn.Sequential(conv_bn(3, c0, 3, 2), conv_bn(c0, c0), conv_bn(c0, c0))
        self.stage1 = res_stage(c0, c1, blocks[0], stride=2)
        self.stage2 = res_stage(c1, c2, blocks[1], stride=2)
        self.stage3 = res_stage(c2, c3, blocks[2], stride=2 if cost_scale == 16 else 1)
        self.stage4 = res_stage(c3, c4, blocks[3], stride=1)
        self.cat = Functional()
        # A last linear (BN, no ReLU) projection, as PSMNet/GwcNet end their feature extractors:
        # signed features make the correlation discriminative from the first steps.
        self.matching_feature = conv_bn(c3 + c4, c3 + c4, 1, relu=False)
        self.concat_feature = nn.Sequential(conv_bn(c3 + c4, c3, 3), conv_bn(c3, c5, 1, relu=False))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        s3 = self.stage3(self.stage2(self.stage1(self.stem(x))))
        s4 = self.stage4(s3)
        features = self.cat.cat([s3, s4], dim=1)
        return self.matching_feature(features), self.concat_feature(features)


def shift_right_view(x: Tensor, d: int, cat: Callable[..., Tensor] = torch.cat) -> Tensor:
    """The right view moved d columns to the right, its first column repeated into the gap.

    Built from a slice and a concatenation only, so it stays a static, quantizable graph; `cat` is
    a `Functional`'s cat in the model, so the shifted tensor has a quantizer of its own.
    """
    width = int(x.shape[-1])
    d = min(d, width)
    if d == 0:
        return x
    if d == width:
        return cat([x[..., :1]] * width, dim=-1)
    return cat([x[..., :1]] * d + [x[..., : width - d]], dim=-1)


class CostVolume(nn.Module):
    """Group-wise correlation plus concatenated features over D disparities at 1/cost_scale.

    Group-wise correlation <f_l, f_r>_g / (C/G) is an element-wise product followed by a fixed,
    grouped 1x1 convolution with weights 1/(C/G), so it runs as an integer conv once quantized.
    Output: [B, G + 2 * C_concat, D, H, W].
    """

    def __init__(self, num_disparities: int, matching_channels: int, groups: int) -> None:
        super().__init__()
        self.num_disparities = num_disparities
        self.group_reduce = nn.Conv2d(matching_channels, groups, 1, groups=groups, bias=False)
        nn.init.constant_(self.group_reduce.weight, groups / matching_channels)
        self.group_reduce.weight.requires_grad_(False)
        self.shift_match = Functional()
        self.shift_concat = Functional()
        self.mul = Functional()
        self.cat_slice = Functional()
        self.cat_volume = Functional()

    def forward(self, match_l: Tensor, match_r: Tensor, concat_l: Tensor, concat_r: Tensor) -> Tensor:
        slices = []
        for d in range(self.num_disparities):
            gwc = self.group_reduce(self.mul.mul(match_l, shift_right_view(match_r, d, self.shift_match.cat)))
            cost = self.cat_slice.cat([gwc, concat_l, shift_right_view(concat_r, d, self.shift_concat.cat)], dim=1)
            slices.append(cost.unsqueeze(2))
        return self.cat_volume.cat(slices, dim=2)


class Aggregation(nn.Module):
    """3D convs over (D, H, W): in->C, `blocks` x C->C, C->1 (with bias, no BN)."""

    def __init__(self, cin: int, channels: int, blocks: int) -> None:
        super().__init__()
        layers = [conv_bn(cin, channels, dims=3)] + [conv_bn(channels, channels, dims=3) for _ in range(blocks)]
        self.layers = nn.Sequential(*layers)
        self.out = nn.Conv3d(channels, 1, 3, padding=1, bias=True)

    # oneDNN's bf16 Conv3d backward gave NaN weight gradients on the CPU (5 of 30 seeded runs of the
    # test model within six steps; none in float32): on the CPU the 3-D convs stay float32
    @float32_under_autocast(only_on="cpu")
    def forward(self, volume: Tensor) -> Tensor:
        return self.out(self.layers(volume)).squeeze(1)


class SoftArgmin(nn.Module):
    """Softmax over D, then the expectation of arange(D)/D as a fixed 1x1 conv: [B,D,H,W] -> [B,1,H,W]."""

    def __init__(self, num_disparities: int) -> None:
        super().__init__()
        self.softmax = nn.Softmax(dim=1)
        self.regression = nn.Conv2d(num_disparities, 1, 1, bias=False)
        weights = torch.arange(num_disparities, dtype=torch.float32) / num_disparities
        self.regression.weight.data.copy_(weights.view(1, num_disparities, 1, 1))
        self.regression.weight.requires_grad_(False)

    # bf16 keeps 8 significant bits: a disparity step of 0.75 px at maxdisp 192, the very precision
    # the int16 map avoids; the disparity (and the refinement's add onto it) stays float32
    @float32_under_autocast()
    def forward(self, cost: Tensor) -> Tensor:
        return self.regression(self.softmax(cost))


class RefineLevel(nn.Module):
    """Upsample the disparity x2, read it with the left image at that scale, add a residual."""

    def __init__(self, channels: int, dilations: list[int]) -> None:
        super().__init__()
        self.upsample = Requantized(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
        self.cat = Functional()
        self.conv_in = conv_bn(1 + 3, channels)
        self.blocks = nn.Sequential(*[ResBlock(channels, channels, dilation=d) for d in dilations])
        self.residual = nn.Conv2d(channels, 1, 3, padding=1, bias=True)
        # Start as a plain upsampling: the ReLU after the add cannot kill a residual that starts at zero.
        nn.init.zeros_(self.residual.weight)
        nn.init.zeros_(self.residual.bias)
        self.add = Functional()

    def forward(self, disp: Tensor, image: Tensor) -> Tensor:
        up = self.upsample(disp)
        residual = self.residual(self.blocks(self.conv_in(self.cat.cat([up, image], dim=1))))
        return self.add.add_relu(up, residual)


class StereoNetHead(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        c = cfg.out_channels
        self.cost_volume = CostVolume(cfg.num_disparities, c[3] + c[4], cfg.groups)
        self.aggregation = Aggregation(cfg.groups + 2 * c[5], cfg.agg_channels, cfg.agg_blocks)
        self.soft_argmin = SoftArgmin(cfg.num_disparities)
        self.pool = Requantized(nn.AvgPool2d(2, 2))
        self.pyramid_levels = 3 if cfg.cost_scale == 16 else 2
        self.refine = nn.ModuleList(
            [RefineLevel(cfg.refine_channels, cfg.refine_dilations) for _ in range(cfg.refine_levels)]
        )

    def forward(self, left: Tensor, feats_l: tuple[Tensor, Tensor], feats_r: tuple[Tensor, Tensor]) -> list[Tensor]:
        volume = self.cost_volume(feats_l[0], feats_r[0], feats_l[1], feats_r[1])
        disp = self.soft_argmin(self.aggregation(volume))
        # Left image at 1/8 (cost at 1/16 only), 1/4, 1/2, 1/1: the first level refines one octave
        # above the cost volume, and fewer levels stop coarser.
        pyramid = [left]
        for _ in range(self.pyramid_levels):
            pyramid.append(self.pool(pyramid[-1]))
        outputs = [disp]
        for level, image in zip(self.refine, reversed(pyramid)):
            disp = level(disp, image)
            outputs.append(disp)
        return outputs


class StereoNet(nn.Module):
    """Normalised YUV444 left/right [B,3,H,W] (H, W multiples of 32) -> normalised disparities,
    coarsest first, finest last (refine_levels + 1 maps)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.neck = StereoNetNeck(cfg.out_channels, cfg.neck_blocks, cfg.cost_scale)
        self.cat_views = Functional()
        self.head = StereoNetHead(cfg)

    def forward(self, imgl: Tensor, imgr: Tensor) -> list[Tensor]:
        # Both views through the shared neck as one batch: one pass, and BN sees both views alike.
        batch = imgl.shape[0]
        matching, concat = self.neck(self.cat_views.cat([imgl, imgr], dim=0))
        return self.head(imgl, (matching[:batch], concat[:batch]), (matching[batch:], concat[batch:]))


def build_stereonet(cfg: ModelConfig) -> StereoNet:
    return StereoNet(cfg)

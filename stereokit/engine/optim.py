"""Adam with weight decay on conv/linear weights only (not on BN, not on biases), as the recipe."""

from __future__ import annotations

import torch
from torch import nn

_DECAYED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Linear)


# The refinement residual convs output normalised disparity (1.0 = maxdisp pixels): at the
# recipe's LR, Adam's per-weight steps would move that output by pixels per step, so they learn
# at `residual_lr_scale` times the LR.
RESIDUAL_SUFFIX = ".residual"


def param_groups(model: nn.Module, weight_decay: float, lr: float, residual_lr_scale: float = 1.0) -> list[dict]:
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for module_name, module in model.named_modules():
        slow = module_name.endswith(RESIDUAL_SUFFIX)
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            decayed = isinstance(module, _DECAYED) and name == "weight"
            groups.setdefault((decayed, slow), []).append(param)
    return [
        {"params": params, "weight_decay": weight_decay if decayed else 0.0, "lr": lr * (residual_lr_scale if slow else 1.0)}
        for (decayed, slow), params in sorted(groups.items(), key=lambda kv: (not kv[0][0], kv[0][1]))
    ]


def build_adam(model: nn.Module, lr: float, weight_decay: float, residual_lr_scale: float = 1.0) -> torch.optim.Adam:
    return torch.optim.Adam(param_groups(model, weight_decay, lr, residual_lr_scale), lr=lr)

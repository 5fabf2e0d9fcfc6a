"""Adam with weight decay on conv/linear weights only (not on BN, not on biases), as the recipe."""

from __future__ import annotations

import torch
from torch import nn

_DECAYED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Linear)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            (decay if isinstance(module, _DECAYED) and name == "weight" else no_decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_adam(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.Adam:
    return torch.optim.Adam(param_groups(model, weight_decay), lr=lr)

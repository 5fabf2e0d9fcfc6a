"""Weight-space ensembling of a fine-tune with its start (WiSE-FT, Wortsman et al. 2022): the
fine-tuned weights pulled part of the way back to the ones it started from. A fine-tune on
generated scenes forgets some of what its start knew about other images; the blend keeps it."""

from __future__ import annotations

import copy

import torch
from torch import nn


def blended(model: nn.Module, init_state: dict[str, torch.Tensor], init_weight: float) -> nn.Module:
    """A copy of `model` whose floating-point parameters and buffers (batch-norm statistics too) are
    init_weight x init_state's + (1 - init_weight) x its own; integer buffers (batch counts) are its own."""
    out = copy.deepcopy(model)
    with torch.no_grad():
        for name, tensor in out.state_dict().items():
            if tensor.is_floating_point():
                tensor.mul_(1.0 - init_weight).add_(init_state[name].to(tensor.device, tensor.dtype), alpha=init_weight)
    return out

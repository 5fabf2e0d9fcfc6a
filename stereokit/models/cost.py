"""Parameters and multiply-accumulates counted from the model's real layers with forward hooks.

The forward runs on the meta device: shapes are exact, no arithmetic is done, so counting the
full 544x960 model takes milliseconds and no memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

_MAC_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Linear)


@dataclass
class ModuleCost:
    name: str
    params: int
    macs: int


def layer_macs(module: nn.Module, inputs: torch.Tensor, output: torch.Tensor) -> int:
    """MACs of one call: every output element costs (C_in / groups) * prod(kernel) MACs
    (for a transposed conv, every input element does, spread over C_out / groups)."""
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    kernel = math.prod(module.kernel_size)
    if isinstance(module, (nn.ConvTranspose2d, nn.ConvTranspose3d)):
        return inputs.numel() * (module.out_channels // module.groups) * kernel
    return output.numel() * (module.in_channels // module.groups) * kernel


def count_costs(model: nn.Module, example_inputs: tuple[torch.Tensor, ...], groups: list[str]) -> list[ModuleCost]:
    """One row per group (a module path prefix); leaves outside every group land in "other"."""
    macs: dict[str, int] = {g: 0 for g in groups}
    macs["other"] = 0

    def group_of(name: str) -> str:
        matches = [g for g in groups if name == g or name.startswith(g + ".")]
        return max(matches, key=len) if matches else "other"

    handles = []
    for name, module in model.named_modules():
        if isinstance(module, _MAC_LAYERS):
            def hook(mod: nn.Module, args: tuple, out: torch.Tensor, _group: str = group_of(name)) -> None:
                macs[_group] += layer_macs(mod, args[0], out)
            handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(*example_inputs)
    finally:
        for h in handles:
            h.remove()

    params: dict[str, int] = {g: 0 for g in macs}
    for name, p in model.named_parameters():
        params[group_of(name.rsplit(".", 1)[0])] += p.numel()
    rows = [ModuleCost(g, params[g], macs[g]) for g in groups]
    if params["other"] or macs["other"]:
        rows.append(ModuleCost("other", params["other"], macs["other"]))
    return rows

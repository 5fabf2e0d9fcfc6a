"""Evaluation at full resolution (padded to a multiple of 32), reduced over DDP ranks."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from stereokit.engine.metrics import StereoMetrics
from stereokit.models.postprocess import pad_to_multiple, postprocess
from stereokit.progress import progress_bar
from stereokit.quant.prepare import frozen_observers

Predictor = Callable[[Tensor, Tensor], Tensor]


def torch_predictor(model: nn.Module, maxdisp: int) -> Predictor:
    """Normalised inputs of any size -> disparity in pixels at that size."""

    def run(imgl: Tensor, imgr: Tensor) -> Tensor:
        left, pad = pad_to_multiple(imgl)
        right, _ = pad_to_multiple(imgr)
        return postprocess(model(left, right), tuple(left.shape[-2:]), maxdisp, pad)

    return run


@torch.no_grad()
def evaluate_predictor(
    predictor: Predictor,
    loader: DataLoader,
    maxdisp: int,
    device: torch.device,
    show_progress: bool = True,
    on_batch: Callable[[dict[str, Tensor], Tensor], None] | None = None,
    description: str = "eval",
) -> dict[str, Any]:
    metrics = StereoMetrics(maxdisp)
    with progress_bar(description, len(loader), enabled=show_progress) as advance:
        for batch in loader:
            pred = predictor(batch["imgl"].to(device), batch["imgr"].to(device)).float().cpu()
            metrics.update(pred, batch["disp"], batch["index"])
            if on_batch is not None:
                on_batch(batch, pred)
            advance()
    metrics.gather()
    return metrics.summary()


def evaluate(model: nn.Module, loader: DataLoader, maxdisp: int, device: torch.device, show_progress: bool = True,
             on_batch: Callable[[dict[str, Tensor], Tensor], None] | None = None, description: str = "eval") -> dict[str, Any]:
    was_training = model.training
    model.eval()
    try:
        with frozen_observers(model):
            return evaluate_predictor(torch_predictor(model, maxdisp), loader, maxdisp, device, show_progress, on_batch, description)
    finally:
        model.train(was_training)

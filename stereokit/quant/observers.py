"""A percentile activation observer: the calibration range ignores the rarest outliers."""

from __future__ import annotations

import torch
from torch.ao.quantization.observer import MinMaxObserver

# torch.kthvalue over a huge activation is slow; a strided sample of this size keeps the
# percentile within a fraction of a quantization step and the cost fixed.
_MAX_SAMPLES = 1 << 20


class PercentileObserver(MinMaxObserver):
    """Range = the running mean over batches of the (100 - p)-th and p-th percentiles of each batch."""

    def __init__(self, percentile: float = 99.985, **kwargs) -> None:
        super().__init__(**kwargs)
        self.percentile = percentile
        self.register_buffer("batches", torch.tensor(0, dtype=torch.long))

    def forward(self, x_orig: torch.Tensor) -> torch.Tensor:
        if x_orig.numel() == 0:
            return x_orig
        x = x_orig.detach().flatten().to(self.min_val.dtype)
        if x.numel() > _MAX_SAMPLES:
            x = x[:: x.numel() // _MAX_SAMPLES + 1]
        n = x.numel()
        k_hi = max(1, min(n, int(round(n * self.percentile / 100.0))))
        k_lo = max(1, min(n, n - k_hi + 1))
        lo = torch.kthvalue(x, k_lo).values
        hi = torch.kthvalue(x, k_hi).values
        count = int(self.batches.item())
        if count == 0:
            self.min_val.resize_(lo.shape).copy_(lo)
            self.max_val.resize_(hi.shape).copy_(hi)
        else:
            self.min_val.copy_(self.min_val + (lo - self.min_val) / (count + 1))
            self.max_val.copy_(self.max_val + (hi - self.max_val) / (count + 1))
        self.batches += 1
        return x_orig

    def extra_repr(self) -> str:
        return f"percentile={self.percentile}, min_val={self.min_val}, max_val={self.max_val}"

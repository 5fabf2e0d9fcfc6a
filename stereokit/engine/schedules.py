"""Learning-rate schedules as step -> multiplier functions (for LambdaLR, so they checkpoint)."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class WarmupCosine:
    """Linear warmup from 0 to 1 over `warmup` steps, then cosine from 1 down to `floor`."""

    total: int
    warmup: int
    floor: float = 0.0

    def __call__(self, step: int) -> float:
        if self.warmup > 0 and step < self.warmup:
            return (step + 1) / self.warmup
        span = max(1, self.total - self.warmup)
        progress = min(1.0, (step - self.warmup) / span)
        return self.floor + (1 - self.floor) * 0.5 * (1 + math.cos(math.pi * progress))


@dataclass(frozen=True)
class StepDecay:
    """Multiply by `gamma` at each milestone step."""

    milestones: tuple[int, ...]
    gamma: float

    def __call__(self, step: int) -> float:
        return self.gamma ** sum(step >= m for m in self.milestones)

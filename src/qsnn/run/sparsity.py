"""Sparsity loss of papers/002: weight * s(progress) * (mean firing rate - f_target)^2.

``s`` ramps with training progress (fraction of optimizer steps done): 0 until ``start``,
linear to 1 at ``end``, then 1. The mean firing rate is the mean of the per-stage rates of the
last forward, kept with their graph by ``SpikingNet.rates_grad``.
"""
from __future__ import annotations

import torch


class SparsityLoss:
    def __init__(self, weight: float = 1.0, f_target: float = 0.01, start: float = 0.2, end: float = 0.6):
        if not 0 <= start <= end <= 1:
            raise ValueError(f"loss.sparsity.start={start!r}, end={end!r}: need 0 <= start <= end <= 1")
        self.weight, self.f_target, self.start, self.end = float(weight), float(f_target), float(start), float(end)

    def scale(self, progress: float) -> float:
        if progress < self.start:
            return 0.0
        if progress >= self.end or self.end == self.start:
            return 1.0
        return (progress - self.start) / (self.end - self.start)

    def __call__(self, rates: list[torch.Tensor], progress: float) -> torch.Tensor:
        rate = torch.stack([r.float() for r in rates]).mean()
        return self.weight * self.scale(progress) * (rate - self.f_target) ** 2

"""Weight quantizers with one scale per seed, for a weight that holds S seeds folded into dim 0
([S*out, ...]). Each views the weight as [S, out, ...] and runs the per-seed quantizer's own
arithmetic with its reductions (max-abs / mean-abs) over each seed's slice only, so every seed
gets exactly the scale it gets when trained alone."""
from __future__ import annotations

import torch
from torch import nn

from qsnn.nn.quant.sigmoid_sum import SigmoidSumQuantizer
from qsnn.nn.quant.uniform import UniformSTEQuantizer


def _per_seed(w: torch.Tensor, seeds: int) -> torch.Tensor:
    return w.view(seeds, -1, *w.shape[1:])


class StackedUniformSTEQuantizer(UniformSTEQuantizer):
    def __init__(self, seeds: int, bits: int, per_channel: bool, narrow: bool):
        super().__init__(bits, per_channel, narrow)
        self.seeds = seeds

    def _reduce_dims(self, w: torch.Tensor) -> tuple[int, ...]:  # w: [S, out, ...]
        return tuple(range(2, w.dim())) if self.per_channel and w.dim() > 2 else tuple(range(1, w.dim()))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return super().forward(_per_seed(w, self.seeds)).view(w.shape)


class StackedSigmoidSumQuantizer(SigmoidSumQuantizer):
    """alpha and beta are [S]; the temperature is shared (every seed is at the same epoch).
    The per-seed quantizers must be initialised (``initialized``) before stacking."""

    def __init__(self, seeds: int, bits: int, narrow: bool, t0: float, t_max: float):
        super().__init__(bits, narrow, t0, t_max)
        self.seeds = seeds
        self.alpha = nn.Parameter(torch.ones(seeds))
        self.beta = nn.Parameter(torch.ones(seeds))
        self.initialized.fill_(True)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        ws = _per_seed(w, self.seeds)
        shape = (self.seeds,) + (1,) * (ws.dim() - 1)
        return self.quantize(ws, self.alpha.view(shape), self.beta.view(shape)).view(w.shape)


def stacked_quantizer(q: nn.Module, seeds: int) -> nn.Module:
    """The stacked form of one seed's quantizer; TypeError names a quantizer that has none."""
    if type(q) is UniformSTEQuantizer:
        return StackedUniformSTEQuantizer(seeds, q.bits, q.per_channel, q.narrow)
    if type(q) is SigmoidSumQuantizer:
        return StackedSigmoidSumQuantizer(seeds, q.bits, q.narrow, q.t0, q.t_max)
    raise TypeError(f"weight quantizer {type(q).__name__} has no stacked form")

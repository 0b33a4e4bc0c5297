"""Sigmoid-sum weight quantizer (papers/003; Yang et al. 2019, "Quantization Networks").

    Q(x) = alpha * (sum_i s_i * sigmoid(T * (beta * x - b_i)) - o)

Levels l_0 < ... < l_{n-1} (integers, in units of 1/beta): binary {-1, +1}; b >= 2 bits narrow
{-(2^(b-1)-1) .. 2^(b-1)-1} (2 bits = ternary), or with ``narrow=false`` all 2^b integers
-2^(b-1) .. 2^(b-1)-1. Step heights s_i = l_{i+1} - l_i, offsets b_i = (l_i + l_{i+1}) / 2
(midpoints), o = -l_0. alpha (output scale) and beta (input scale) are learnable; they start
at max-abs scaling (binary: beta = 1/mean|w|, alpha = mean|w|, the XNOR-Net scale), set from
the first weight the quantizer sees. The temperature T is a buffer set each epoch by
``set_epoch`` (called by ``callbacks.EpochSchedules``): T = min(t0 * (epoch + 1), t_max).
Training uses the soft sum (differentiable, no STE); eval uses hard steps (T -> inf), so the
weights take exactly ``levels()`` distinct values.
"""
from __future__ import annotations

import torch
from torch import nn


def level_values(bits: int, narrow: bool = True) -> list[int]:
    if bits == 1:
        return [-1, 1]
    top = 2 ** (bits - 1) - 1
    return list(range(-top if narrow else -top - 1, top + 1))


class SigmoidSumQuantizer(nn.Module):
    def __init__(self, bits: int = 4, narrow: bool = True, t0: float = 1.0, t_max: float = 100.0):
        super().__init__()
        self.bits, self.narrow, self.t0, self.t_max = int(bits), bool(narrow), float(t0), float(t_max)
        lv = torch.tensor(level_values(self.bits, self.narrow), dtype=torch.float32)
        self.register_buffer("heights", lv[1:] - lv[:-1], persistent=False)
        self.register_buffer("offsets", (lv[1:] + lv[:-1]) / 2, persistent=False)
        self.register_buffer("o", -lv[0], persistent=False)
        self.register_buffer("temperature", torch.tensor(self.t0))
        self.register_buffer("initialized", torch.tensor(False))
        self.alpha = nn.Parameter(torch.tensor(1.0))
        self.beta = nn.Parameter(torch.tensor(1.0))

    @torch.no_grad()
    def _init_scales(self, w: torch.Tensor) -> None:
        if self.bits == 1:
            m = w.abs().mean().clamp_min(1e-8)
            self.beta.fill_(1 / m), self.alpha.fill_(m)
        else:
            top = 2 ** (self.bits - 1) - 1  # max|w| -> the top level
            m = w.abs().amax().clamp_min(1e-8)
            self.beta.fill_(top / m), self.alpha.fill_(m / top)
        self.initialized.fill_(True)

    def set_epoch(self, epoch: int, max_epochs: int) -> None:
        self.temperature.fill_(min(self.t0 * (epoch + 1), self.t_max))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if not bool(self.initialized):
            self._init_scales(w)
        return self.quantize(w, self.alpha, self.beta)

    def quantize(self, w: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        """Q(w) with scales ``alpha``/``beta`` broadcast against ``w`` (per seed in ``qsnn.stacked``)."""
        z = (beta * w).unsqueeze(-1) - self.offsets  # [..., n_steps]
        if self.training:
            steps = torch.sigmoid(self.temperature * z)
        else:
            steps = (z >= 0).to(w.dtype)  # the T -> inf limit
        return alpha * ((steps * self.heights).sum(-1) - self.o)

    def levels(self) -> int:
        """Number of distinct values a weight can take at eval."""
        return int(self.heights.numel()) + 1

    def extra_repr(self) -> str:
        return f"bits={self.bits}, narrow={self.narrow}, t0={self.t0}, t_max={self.t_max}"

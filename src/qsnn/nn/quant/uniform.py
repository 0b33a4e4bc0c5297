"""Uniform symmetric weight fake-quantization with a straight-through estimator.

Matches Brevitas' ``Int8WeightPerTensorFloat`` (with ``bit_width`` overridden): signed,
narrow range (levels -(2^(b-1)-1) .. 2^(b-1)-1), scale = max|w| / (2^(b-1)-1) computed from
the weights themselves (gradient flows through the scale, as in Brevitas), rounding by STE.
1 bit is binary: sign(w) * mean|w| (XNOR-Net scale), sign by STE.
"""
from __future__ import annotations

import torch
from torch import nn


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """round() forward, identity backward."""
    return x + (torch.round(x) - x).detach()


def sign_ste(x: torch.Tensor) -> torch.Tensor:
    """sign() forward (0 maps to +1), identity backward."""
    return x + (torch.where(x >= 0, 1.0, -1.0).to(x.dtype) - x).detach()


class UniformSTEQuantizer(nn.Module):
    """Fake-quantizes a weight tensor to ``bits`` bits (32 = identity)."""

    def __init__(self, bits: int = 4, per_channel: bool = False, narrow: bool = True):
        super().__init__()
        self.bits, self.per_channel, self.narrow = int(bits), bool(per_channel), bool(narrow)

    def _reduce_dims(self, w: torch.Tensor) -> tuple[int, ...]:
        return tuple(range(1, w.dim())) if self.per_channel and w.dim() > 1 else tuple(range(w.dim()))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if self.bits >= 32:
            return w
        dims = self._reduce_dims(w)
        if self.bits == 1:
            return sign_ste(w) * w.abs().mean(dim=dims, keepdim=True)
        qmax = 2 ** (self.bits - 1) - 1
        qmin = -qmax if self.narrow else -qmax - 1
        scale = (w.abs().amax(dim=dims, keepdim=True) / qmax).clamp_min(1e-12)
        return torch.clamp(round_ste(w / scale), qmin, qmax) * scale

    def levels(self) -> int:
        """Number of distinct values a weight can take."""
        if self.bits >= 32:
            return 2**32
        return 2 if self.bits == 1 else 2**self.bits - (1 if self.narrow else 0)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, per_channel={self.per_channel}, narrow={self.narrow}"

"""Straight-through estimators for quantized activations (Yin et al. 2019).

``ste(x, q, kind)`` returns ``q`` (the quantized value computed from ``x``) in the forward pass
and passes the gradient to ``x`` as if the forward had been the STE's own function:

    identity      dq/dx := 1
    relu          dq/dx := 1[x > 0]
    clipped_relu  dq/dx := 1[0 < x < 1]

Yin et al.: the ReLU and clipped-ReLU STEs give descent directions for quantized ReLU nets;
the identity STE can fail to.
"""
from __future__ import annotations

import torch

STES = ("identity", "relu", "clipped_relu")


def ste_grad(x: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "identity":
        return torch.ones_like(x)
    if kind == "relu":
        return (x > 0).to(x.dtype)
    if kind == "clipped_relu":
        return ((x > 0) & (x < 1)).to(x.dtype)
    raise ValueError(f"ste={kind!r} is not allowed: use one of {', '.join(STES)}")


class STE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, q, kind: str):
        ctx.save_for_backward(x)
        ctx.kind = kind
        return q.clone()

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * ste_grad(x, ctx.kind), None, None


def ste(x: torch.Tensor, q: torch.Tensor, kind: str = "clipped_relu") -> torch.Tensor:
    """``q`` forward, ``grad * ste_grad(x, kind)`` to ``x`` backward (nothing to ``q``)."""
    return STE.apply(x, q.detach(), kind)

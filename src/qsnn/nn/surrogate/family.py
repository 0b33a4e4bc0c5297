"""Heaviside spike with a surrogate derivative from the family of papers/002.

Forward: spk = 1[v > 0] (v = mem - threshold, as snnTorch passes it). Backward: dS/dv =

    rectangular         gamma * 1[|2 beta v| < 1]
    triangular          gamma * max(1 - |beta v|, 0)
    exponential         gamma * exp(-2 beta |v|)
    gaussian            gamma * exp(-pi (beta v)^2)
    sigmoid_derivative  4 gamma s (1 - s),  s = sigmoid(4 beta v)
    fast_sigmoid        gamma / (1 + 2 beta |v|)^2
    q_pseudo_spike      gamma / (1 + 2 beta |v| / (q - 1))^q     (q=2: fast_sigmoid)

Every shape peaks at gamma (v=0) and has area gamma/beta. snnTorch's
``fast_sigmoid(slope=k)`` is ``fast_sigmoid`` with gamma=1, beta=k/2.
"""
from __future__ import annotations

import math

import torch


def _rectangular(v, gamma, beta, q):
    return gamma * ((2 * beta * v).abs() < 1).to(v.dtype)


def _triangular(v, gamma, beta, q):
    return gamma * (1 - (beta * v).abs()).clamp_min(0)


def _exponential(v, gamma, beta, q):
    return gamma * torch.exp(-2 * beta * v.abs())


def _gaussian(v, gamma, beta, q):
    return gamma * torch.exp(-math.pi * (beta * v) ** 2)


def _sigmoid_derivative(v, gamma, beta, q):
    z = 4 * beta * v
    return 4 * gamma * torch.sigmoid(z) * torch.sigmoid(-z)  # s (1 - s) without 1 - s cancelling for s ~ 1


def _fast_sigmoid(v, gamma, beta, q):
    return gamma / (1 + 2 * beta * v.abs()) ** 2


def _q_pseudo_spike(v, gamma, beta, q):
    return gamma / (1 + 2 * beta * v.abs() / (q - 1)) ** q


SHAPES = {
    "rectangular": _rectangular,
    "triangular": _triangular,
    "exponential": _exponential,
    "gaussian": _gaussian,
    "sigmoid_derivative": _sigmoid_derivative,
    "fast_sigmoid": _fast_sigmoid,
    "q_pseudo_spike": _q_pseudo_spike,
}


class SurrogateSpike(torch.autograd.Function):
    """Heaviside forward; ``SHAPES[shape](v, gamma, beta, q)`` times the incoming gradient backward."""

    @staticmethod
    def forward(ctx, v, shape: str, gamma: float, beta: float, q: float):
        ctx.save_for_backward(v)
        ctx.args = (shape, gamma, beta, q)
        return (v > 0).to(v.dtype)  # snnTorch's convention: spike iff mem > threshold

    @staticmethod
    def backward(ctx, grad):
        (v,) = ctx.saved_tensors
        shape, gamma, beta, q = ctx.args
        return grad * SHAPES[shape](v, gamma, beta, q), None, None, None, None


class Surrogate:
    """``spike_grad`` callable for snnTorch neurons (``lif.spike_grad(mem - thr)``).

    A plain object, not a closure, so the stability init can set ``gamma``/``beta`` per layer
    after the net is built.
    """

    def __init__(self, shape: str = "fast_sigmoid", gamma: float = 1.0, beta: float = 1.0, q: float = 2.0,
                 stability: bool = False):
        if shape not in SHAPES:
            raise ValueError(f"surrogate.shape={shape!r} is not allowed: use one of {', '.join(SHAPES)}")
        if not gamma > 0 or not beta > 0:
            raise ValueError(f"surrogate.gamma={gamma!r}, surrogate.beta={beta!r}: both must be > 0")
        if shape == "q_pseudo_spike" and not q > 1:
            raise ValueError(f"surrogate.q={q!r} is not allowed: the tail fatness must be > 1")
        self.shape, self.gamma, self.beta, self.q, self.stability = shape, float(gamma), float(beta), float(q), stability

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        return SurrogateSpike.apply(v, self.shape, self.gamma, self.beta, self.q)

    def derivative(self, v: torch.Tensor) -> torch.Tensor:
        return SHAPES[self.shape](v, self.gamma, self.beta, self.q)

    def __repr__(self) -> str:
        q = f", q={self.q:g}" if self.shape == "q_pseudo_spike" else ""
        return f"Surrogate({self.shape}, gamma={self.gamma:.4g}, beta={self.beta:.4g}{q})"


def surrogate(shape: str = "fast_sigmoid", gamma: float = 1.0, beta: float = 1.0, q: float = 2.0,
              stability: bool = False) -> Surrogate:
    """Config entry point (``_target_: qsnn.nn.surrogate.surrogate``)."""
    return Surrogate(shape, gamma, beta, q, stability)


def snntorch_sigmoid(slope: float = 25.0) -> Surrogate:
    """snnTorch's ``surrogate.sigmoid(slope)``: dS/dv = slope * s * (1 - s), s = sigmoid(slope * v),
    as the family's ``sigmoid_derivative`` with gamma = beta = slope / 4 (``conf/surrogate/sigmoid.yaml``).

    Not snnTorch's own function: it computes exp(-slope v) / (exp(-slope v) + 1)^2, which overflows
    to inf / inf = NaN in float32 for v < -3.5 at slope 25, so any run whose membrane sits well below
    threshold diverged at its first step. ``torch.sigmoid`` stays finite; where snnTorch's value is
    finite the two agree to float rounding (tests/test_surrogate_family.py)."""
    return Surrogate("sigmoid_derivative", gamma=slope / 4, beta=slope / 4)

"""Hybrid sigma-delta neuron (papers/004, Voelker et al. 2020).

A non-spiking activation r = f(x) (ReLU or clipped ReLU) becomes spikes by temporal error
diffusion, per time step:

    V += r * dt;   n = floor(V);   V -= n;   out = n / dt

The quantization error is carried in V, so the output over time tracks r: per step
|out - r| < 1/dt, and the mean over K steps is within 1/(K dt) of r. Large dt: many spikes
per step, out ~ r (non-spiking limit). dt = 1 with the clipped ReLU (r <= 1): at most one
spike per step, out in {0, 1} like a LIF neuron. Training anneals dt geometrically from
``dt_start`` to ``dt_end`` (reached at ``anneal_end`` of the epochs; ``set_epoch`` is called
by ``callbacks.EpochSchedules``), i.e. from non-spiking to spiking. The floor has no
gradient; the gradient to x is a straight-through estimator (``quant/ste.py``).

Same interface as the nets use for ``snn.Leaky``: ``multistep(cur) -> (out, V)`` over
[T, B, ...], and per step ``init_leaky()`` / ``forward(cur, V) -> (out, V)``.
"""
from __future__ import annotations

import torch
from torch import nn

from qsnn.nn.quant.ste import STES, ste

ACTIVATIONS = {"relu": torch.relu, "clipped_relu": lambda x: x.clamp(0, 1)}


class SigmaDelta(nn.Module):
    def __init__(self, activation: str = "clipped_relu", ste: str = "clipped_relu", dt_start: float = 64.0,
                 dt_end: float = 1.0, anneal_end: float = 0.8):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"model.sigma_delta.activation={activation!r} is not allowed: use relu or clipped_relu")
        if ste not in STES:
            raise ValueError(f"model.sigma_delta.ste={ste!r} is not allowed: use one of {', '.join(STES)}")
        if not (dt_start > 0 and dt_end > 0):
            raise ValueError(f"model.sigma_delta.dt_start={dt_start!r}, dt_end={dt_end!r}: both must be > 0")
        self.activation, self.ste_kind = activation, ste
        self.dt_start, self.dt_end, self.anneal_end = float(dt_start), float(dt_end), float(anneal_end)
        self.register_buffer("dt", torch.tensor(self.dt_start))  # saved: eval uses the trained dt

    def set_epoch(self, epoch: int, max_epochs: int) -> None:
        frac = min(epoch / max(self.anneal_end * (max_epochs - 1), 1e-9), 1.0) if max_epochs > 1 else 1.0
        self.dt.fill_(self.dt_start * (self.dt_end / self.dt_start) ** frac)

    def init_leaky(self) -> torch.Tensor:
        return torch.zeros(())

    def forward(self, cur: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r = ACTIVATIONS[self.activation](cur)
        with torch.no_grad():
            v = v + r * self.dt
            n = torch.floor(v)
            v = v - n
        return ste(cur, n / self.dt, self.ste_kind), v

    def multistep(self, cur: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v = torch.zeros_like(cur[0])
        outs, vs = [], []
        for c in cur.unbind(0):
            out, v = self(c, v)
            outs.append(out)
            vs.append(v)
        return torch.stack(outs), torch.stack(vs)

    def extra_repr(self) -> str:
        return (f"activation={self.activation}, ste={self.ste_kind}, dt={float(self.dt):.4g} "
                f"({self.dt_start:g} -> {self.dt_end:g})")

"""A feed-forward spiking network as a list of stages: op -> [norm] -> Leaky.

``op`` is stateless (Linear/Conv, pooling, flatten, dropout); ``norm`` (BatchNorm) is
applied per time step, as in the snnTorch reference, so running statistics match it.

Two execution paths, same parameters, same results:
- ``impl="snntorch"``: the reference tutorial loop: for each step, every stage in turn,
  calling ``snn.Leaky`` per step.
- ``impl="fast"`` (default): stage by stage over the whole sequence. Stateless ops run once
  over [T*B, ...]; when the input is the same every step (direct encoding, passed as an
  expanded view with stride 0 on the time axis) the first op runs once, not T times.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from qsnn.neurons import lif_multistep


class Stage(nn.Module):
    def __init__(self, op: nn.Module, lif: nn.Module, norm: nn.Module | None = None):
        super().__init__()
        self.op, self.norm, self.lif = op, norm, lif


def _per_step(fn, x: torch.Tensor) -> torch.Tensor:
    return torch.stack([fn(x_t) for x_t in x.unbind(0)])


def _is_repeated(x: torch.Tensor) -> bool:
    return x.dim() > 1 and x.shape[0] > 1 and x.stride(0) == 0


class SpikingNet(nn.Module):
    def __init__(self, stages: list[Stage], impl: str = "fast"):
        super().__init__()
        if impl not in ("fast", "snntorch"):
            raise ValueError(f"model.impl={impl!r} is not allowed: use 'fast' or 'snntorch'")
        self.stages = nn.ModuleList(stages)
        self.impl = impl
        self.rates: list[torch.Tensor] = []  # mean firing rate per stage, last forward (detached)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: [T, B, ...] -> (output spikes [T, B, C], output membrane [T, B, C])."""
        with parametrize.cached():  # quantize each weight once per forward, not once per step
            if self.impl == "snntorch":
                return self._forward_loop(x)
            return self._forward_fast(x)

    def _forward_fast(self, x):
        h, rates = x, []
        for i, st in enumerate(self.stages):
            T = h.shape[0]
            if i == 0 and _is_repeated(h):
                first = st.op(h[0])
                cur = first.unsqueeze(0).expand(T, *first.shape)
            else:
                cur = st.op(h.flatten(0, 1))
                cur = cur.unflatten(0, (T, -1))
            if st.norm is not None:
                cur = _per_step(st.norm, cur)
            h, mem = lif_multistep(cur, st.lif)
            rates.append(h.detach().mean())
        self.rates = rates
        return h, mem

    def _forward_loop(self, x):
        mems = [st.lif.init_leaky() for st in self.stages]
        counts = [0.0] * len(self.stages)
        spk_rec, mem_rec = [], []
        for x_t in x.unbind(0):
            h = x_t
            for i, st in enumerate(self.stages):
                cur = st.op(h)
                if st.norm is not None:
                    cur = st.norm(cur)
                h, mems[i] = st.lif(cur, mems[i])
                counts[i] = counts[i] + h.detach().mean()
            spk_rec.append(h)
            mem_rec.append(mems[-1])
        self.rates = [c / x.shape[0] for c in counts]
        return torch.stack(spk_rec), torch.stack(mem_rec)

"""A feed-forward spiking network as a list of stages: op -> [norm] -> Leaky.

``op`` is stateless (Linear/Conv, pooling, flatten, dropout); ``norm`` (BatchNorm) is
applied per time step, as in the snnTorch reference, so running statistics match it.

Two execution paths, same parameters, same results:
- ``impl="snntorch"``: the reference tutorial loop: for each step, every stage in turn,
  calling ``snn.Leaky`` per step.
- ``impl="fast"`` (default): stage by stage over the whole sequence, chosen by measurement
  on CPU (``python -m qsnn.cost.bench``):
  * when the input is the same every step (direct encoding, passed as an expanded view with
    stride 0 on the time axis) the first op runs once, not T times;
  * ops holding a conv run step by step (one conv over [T*B, ...] measured no faster here,
    within noise, and slower in SpikingJelly/Norse-style multistep); other ops (Linear,
    flatten) run once over [T*B, ...];
  * a BatchNorm after such a repeated op also runs once (``run_norm``);
  * an op with ``fused_fn()`` (``models.csnn.ConvAvgPool2d``: conv then avgpool2 as ONE
    stride-2 conv) is called through it; the fused kernel is derived from the layer's
    (quantized) weight once per forward;
  * the LIF recurrence runs as one autograd function per layer (``neurons.lif_fused``; on CUDA
    two Triton kernels, ``qsnn.nn.lif_gpu``);
    a neuron with its own ``multistep(cur)`` method (e.g. sigma-delta) runs that instead.
  Dropout draws its masks in another order than the loop, so with dropout > 0 the two paths
  agree in distribution, not sample by sample.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from qsnn.nn.neurons import fusable, lif_fused, lif_multistep


class Stage(nn.Module):
    def __init__(self, op: nn.Module, lif: nn.Module, norm: nn.Module | None = None):
        super().__init__()
        self.op, self.norm, self.lif = op, norm, lif


def _per_step(fn, x: torch.Tensor) -> torch.Tensor:
    return torch.stack([fn(x_t) for x_t in x.unbind(0)])


def _is_repeated(x: torch.Tensor) -> bool:
    return x.dim() > 1 and x.shape[0] > 1 and x.stride(0) == 0


_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def run_op(op: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """A stateless op over a sequence [T, B, ...] -> [T, B, ...], the fastest way measured on CPU."""
    T = h.shape[0]
    fn = op.fused_fn() if hasattr(op, "fused_fn") else op
    if _is_repeated(h):  # same input every step: compute once, share it as a view
        y = fn(h[0])
        return y.unsqueeze(0).expand(T, *y.shape)
    if any(isinstance(m, _CONVS) for m in op.modules()):
        return _per_step(fn, h)
    return fn(h.flatten(0, 1)).unflatten(0, (T, -1))


def run_norm(norm: nn.Module, cur: torch.Tensor) -> torch.Tensor:
    """A norm applied per step, as the reference does. With the same input every step (the first
    stage under direct encoding) every step's output is the same: normalise once and apply the
    T-1 further running-statistics updates the loop would make, in closed form (one op per buffer,
    not 2(T-1) small kernels; identical up to rounding): k updates with momentum m give
    running_k = (1-m)^k running_0 + (1 - (1-m)^k) mean, i.e. running_0.lerp(mean, 1 - (1-m)^k)."""
    bn = isinstance(norm, nn.modules.batchnorm._BatchNorm) and norm.momentum is not None
    if not (bn and _is_repeated(cur)):
        return _per_step(norm, cur)
    x = cur[0]
    if norm.training and norm.track_running_stats:  # before norm(x): its backward saves these buffers
        with torch.no_grad():
            dims = [0, *range(2, x.dim())]
            mean, var = x.mean(dims), x.var(dims, unbiased=True)
            weight = 1 - (1 - norm.momentum) ** (cur.shape[0] - 1)
            norm.running_mean.lerp_(mean, weight)
            norm.running_var.lerp_(var, weight)
            norm.num_batches_tracked.add_(cur.shape[0] - 1)
    y = norm(x)
    return y.unsqueeze(0).expand(cur.shape[0], *y.shape)


def spikes_like(spk: torch.Tensor, cur: torch.Tensor) -> torch.Tensor:
    """snnTorch's Heaviside returns float32 spikes; in a float64 run they become float64 (0/1:
    exact) so the next layer's float64 weights can take them. No-op otherwise."""
    dtype = torch.promote_types(cur.dtype, spk.dtype)
    return spk if spk.dtype == dtype else spk.to(dtype)


def run_neuron(lif: nn.Module, cur: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A neuron over a sequence: its own ``multistep`` if it has one, the fused LIF when it is a
    plain snn.Leaky, else the step loop (state quantization, graded spikes)."""
    if hasattr(lif, "multistep"):
        return lif.multistep(cur)
    spk, mem = lif_fused(cur, lif) if fusable(lif) else lif_multistep(cur, lif)
    return spikes_like(spk, cur), mem


class SpikingNet(nn.Module):
    def __init__(self, stages: list[Stage], impl: str = "fast"):
        super().__init__()
        if impl not in ("fast", "snntorch"):
            raise ValueError(f"model.impl={impl!r} is not allowed: use 'fast' or 'snntorch'")
        self.stages = nn.ModuleList(stages)
        self.impl = impl
        self.rates: list[torch.Tensor] = []  # mean firing rate per stage, last forward (detached)
        self.rates_grad: list[torch.Tensor] = []  # the same with their graph, for a sparsity loss

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: [T, B, ...] -> (output spikes [T, B, C], output membrane [T, B, C])."""
        with parametrize.cached():  # quantize each weight once per forward, not once per step
            if self.impl == "snntorch":
                return self._forward_loop(x)
            return self._forward_fast(x)

    def _forward_fast(self, x):
        h, rates = x, []
        for st in self.stages:
            cur = run_op(st.op, h)
            if st.norm is not None:
                cur = run_norm(st.norm, cur)
            h, mem = run_neuron(st.lif, cur)
            rates.append(self.stage_rate(h))
        self.rates_grad, self.rates = rates, [r.detach() for r in rates]
        return h, mem

    def stage_rate(self, spikes: torch.Tensor) -> torch.Tensor:
        """Mean firing rate of one stage's spikes [T, B, ...] (a stacked net keeps one per seed)."""
        return spikes.mean()

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
                h = spikes_like(h, cur)
                counts[i] = counts[i] + h.mean()
            spk_rec.append(h)
            mem_rec.append(mems[-1])
        self.rates_grad = [c / x.shape[0] for c in counts]
        self.rates = [r.detach() for r in self.rates_grad]
        return torch.stack(spk_rec), torch.stack(mem_rec)

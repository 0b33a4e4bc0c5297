"""Stability-based initialisation (papers/002): run once at model build, on one training batch.

For each stage l of a ``SpikingNet`` (in order, feeding the next stage the spikes the previous
one now produces):

1. Initial firing rate. The additive knob of the stage is shifted by delta until the stage's
   mean firing rate over the batch is ``target_rate`` (0.5): the weight mean (w += delta, when
   the stage input is non-negative, e.g. spikes: the current then grows monotonically with
   delta since it gains delta * sum_j x_j), else the BatchNorm bias or the layer bias (current
   grows by delta). The rate is monotone in delta, so bisection finds it. A rate of 0.5 puts
   the median of the centred voltage v = mem - thr at 0, where every surrogate peaks.

2. Jacobian. Between layers a step's Jacobian is J_ij = S'(v_i) W_ij (the reset path is
   detached, the leak path has |beta| < 1). Its expected squared norm per output unit is

       E ||J_i.||^2 = E[S'(v)^2] * mean_i sum_j W_ij^2          (= fan_in * E[w^2] * E[S'(v)^2])

   with v the measured voltages. Writing S'(v) = gamma * phi(beta * v) (phi the shape at
   gamma = 1), we take beta = 1 / std(v), so the surrogate's width matches the spread of the
   voltage, and then gamma = 1 / sqrt(mean_i ||W_i||^2 * E[phi(beta v)^2]), which makes the
   expected squared step Jacobian exactly 1 on the calibration batch.

Weight variance is left at PyTorch's default (Kaiming-uniform, Var = 1/(3 fan_in)); gamma absorbs
the Jacobian condition. Pooling and BatchNorm scaling between the layer and the neuron are not
in the Jacobian estimate. Each stage gets its own copy of the surrogate (``lif.spike_grad``).
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn

from qsnn.nn.neurons import lif_multistep
from qsnn.nn.quant.apply import QUANTIZABLE


def _run_stage(st, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    T = h.shape[0]
    cur = st.op(h.flatten(0, 1)).unflatten(0, (T, -1))
    if st.norm is not None:
        cur = torch.stack([st.norm(c) for c in cur.unbind(0)])
    return lif_multistep(cur, st.lif)


def _bisect(rate_at, target: float, scale: float, iters: int = 30) -> float:
    lo, hi = -scale, scale
    for _ in range(40):  # widen the bracket until it holds the target
        if rate_at(hi) >= target:
            break
        hi *= 2
    for _ in range(40):
        if rate_at(lo) <= target:
            break
        lo *= 2
    for _ in range(iters):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if rate_at(mid) < target else (lo, mid)
    return (lo + hi) / 2


@torch.no_grad()
def stability_init(net: nn.Module, x: torch.Tensor, target_rate: float = 0.5) -> list[dict]:
    """Set each stage's weight mean (or bias) and surrogate gamma/beta; returns what was chosen."""
    chosen, h = [], x
    for i, st in enumerate(net.stages):
        if not hasattr(st.lif, "spike_grad") or not hasattr(st.lif.spike_grad, "gamma"):
            raise ValueError("surrogate.stability=true needs model.neuron=leaky and a surrogate/sg_* option")
        layer = [m for m in st.op.modules() if isinstance(m, QUANTIZABLE)][-1]
        norm_state = copy.deepcopy(st.norm.state_dict()) if st.norm is not None else None
        if h.min() >= 0:
            knob, name = layer.weight, "weight_mean"
        elif st.norm is not None and getattr(st.norm, "bias", None) is not None:
            knob, name = st.norm.bias, "norm_bias"
        elif layer.bias is not None:
            knob, name = layer.bias, "bias"
        else:
            raise ValueError(f"surrogate.stability=true: stage {i} has signed input and no bias to shift")
        base = knob.detach().clone()

        def rate_at(delta: float) -> float:
            knob.copy_(base + delta)
            return float(_run_stage(st, h)[0].mean())

        delta = _bisect(rate_at, target_rate, scale=float(base.std()) if base.numel() > 1 else 0.1)
        knob.copy_(base + delta)
        spk, mem = _run_stage(st, h)
        if norm_state is not None:  # calibration batches must not move BatchNorm's running stats
            st.norm.load_state_dict(norm_state)
        v = (mem - st.lif.threshold).flatten()
        sg = copy.copy(st.lif.spike_grad)
        sg.beta = 1.0 / max(float(v.std()), 1e-6)
        sg.gamma = 1.0
        w = layer.weight.flatten(1)
        row_sq = float((w**2).sum(1).mean())
        phi_sq = float((sg.derivative(v) ** 2).mean())
        sg.gamma = 1.0 / math.sqrt(max(row_sq * phi_sq, 1e-12))
        st.lif.spike_grad = sg
        jac2 = row_sq * float((sg.derivative(v) ** 2).mean())
        chosen.append({"stage": i, "knob": name, "delta": delta, "rate": float(spk.mean()),
                       "gamma": sg.gamma, "beta": sg.beta, "w_mean": float(layer.weight.mean()),
                       "w_var": float(layer.weight.var()), "jacobian_sq": jac2})
        h = spk
    return chosen

"""Leaky integrate-and-fire dynamics, multistep.

Neuron parameters live in snnTorch ``snn.Leaky`` modules (so checkpoints, learnable
beta/threshold, state quantization and NIR export stay snnTorch's); this file runs the same
recurrence over a whole sequence at once, which is what the fast path needs.

snnTorch's Leaky step (reset_delay=True), reproduced exactly:
    reset_t = H(mem_{t-1} - thr)            (detached; equals the previous spike)
    mem_t   = beta * mem_{t-1} + I_t - reset_t * thr         (reset="subtract")
    mem_t   = beta * (1 - reset_t) * mem_{t-1} + I_t          (reset="zero")
    mem_t   = state_quant(mem_t)            (if set)
    spk_t   = spike_grad(state_quant(mem_t) - thr)
"""
from __future__ import annotations

import torch
import snntorch as snn


def lif_multistep(cur: torch.Tensor, lif: snn.Leaky) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``lif`` over ``cur`` of shape [T, B, ...]; returns (spikes, membrane), both [T, B, ...]."""
    beta = lif.beta.clamp(0, 1)
    thr = lif.threshold
    quant = lif.state_quant
    mode = lif.reset_mechanism
    mem = torch.zeros_like(cur[0])
    reset = torch.zeros_like(cur[0])
    spikes, mems = [], []
    for i_t in cur.unbind(0):  # unbind, not cur[t]: indexing makes backward O(T^2)
        if mode == "subtract":
            mem = beta * mem + i_t - reset * thr
        elif mode == "zero":
            mem = beta * (1 - reset) * mem + i_t
        else:
            mem = beta * mem + i_t
        if quant:
            mem = quant(mem)
        spk = lif.spike_grad((quant(mem) if quant else mem) - thr)
        reset = spk.detach()
        spikes.append(spk)
        mems.append(mem)
    return torch.stack(spikes), torch.stack(mems)


def make_leaky(
    beta: float,
    threshold: float,
    spike_grad,
    learn_beta: bool = False,
    learn_threshold: bool = False,
    reset: str = "subtract",
    state_quant=None,
) -> snn.Leaky:
    return snn.Leaky(
        beta=beta,
        threshold=threshold,
        spike_grad=spike_grad,
        learn_beta=learn_beta,
        learn_threshold=learn_threshold,
        reset_mechanism=reset,
        state_quant=state_quant or False,
    )

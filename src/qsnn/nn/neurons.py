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

Two implementations:
- ``lif_fused``: one ``torch.autograd.Function`` for the whole sequence. Forward runs the
  loop without building a graph and keeps only the membrane and spikes (its own outputs);
  backward runs the reverse-time recurrence. The surrogate's gradient comes from the
  surrogate itself (its own backward, run once over all steps on a detached input), so any
  elementwise surrogate works unchanged. Used for plain Leaky neurons (no state quantization).
  On CUDA, ``lif_sequence`` runs the same recurrence as two Triton kernels instead (forward and
  backward, the loop over T inside; ``qsnn.nn.lif_gpu``/``lif_triton``); ``LIFSequence`` stays the
  CPU path and the reference they are tested against.
- ``lif_multistep``: the same recurrence with autograd tracking every step; the fallback for
  what the fused function does not cover (state_quant, graded spikes, inhibition).
"""
from __future__ import annotations

import torch
import snntorch as snn
from torch import nn

from qsnn.nn.lif_gpu import LIFTriton, log_path_once, snntorch_surrogate, sum_to, triton_path
from qsnn.nn.sigma_delta import SigmaDelta


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
            mem = beta * ((1 - reset) * mem) + i_t  # snnTorch's order (reset is float32)
        else:
            mem = beta * mem + i_t
        if quant:
            mem = quant(mem)
        spk = lif.spike_grad((quant(mem) if quant else mem) - thr)
        reset = spk.detach()
        spikes.append(spk)
        mems.append(mem)
    return torch.stack(spikes), torch.stack(mems)


def _inplace_grad(spike_grad):
    """For snnTorch's Heaviside-forward surrogates: ``(u, g) -> g * dS/du`` computed in u's buffer
    with the same operations in the same order as their backward (so the same rounding).
    Big fresh tensors are costly on CPU (page faults), hence in place. None for any other callable."""
    named = snntorch_surrogate(spike_grad)
    if named is None:
        return None
    name, p = named
    if name == "fast_sigmoid":  # g / (slope * |u| + 1) ** 2
        k = p["slope"]
        return lambda u, g: torch.div(g, u.abs_().mul_(k).add_(1.0).pow_(2), out=u)
    if name == "atan":  # alpha / 2 / (1 + (pi / 2 * alpha * u) ** 2) * g  (x / t is t.reciprocal() * x)
        a = p["alpha"]
        return lambda u, g: u.mul_(torch.pi / 2 * a).pow_(2).add_(1).reciprocal_().mul_(a / 2).mul_(g)
    if name == "straight_through_estimator":
        return lambda u, g: u.copy_(g)
    return None


class LIFSequence(torch.autograd.Function):
    """(cur [T, ...], beta, thr) -> (spikes [T, ...], membrane [T, ...]), snnTorch Leaky semantics."""

    @staticmethod
    def forward(ctx, cur, beta, thr, spike_grad, reset):
        mem = torch.empty_like(cur, dtype=torch.result_type(cur, beta))
        fast = _inplace_grad(spike_grad)
        # snnTorch spikes are float32; float64 runs (trainer.precision=64) get float64 spikes (0/1: exact)
        spk_dtype = torch.promote_types(torch.float32, mem.dtype)
        spk = torch.empty_like(cur, dtype=spk_dtype) if fast else None
        spikes = []
        m_prev, r = None, None
        for t, i_t in enumerate(cur.unbind(0)):
            m = mem[t]  # written in place: no per-step allocation for the membrane
            if m_prev is None:
                m.copy_(i_t)  # beta * 0 + I_0 (the reset of step 0 is 0)
            else:
                torch.mul(m_prev, beta, out=m)  # same operation order as snnTorch: same rounding
                if reset == "zero":
                    m.mul_(1 - r)
                m.add_(i_t)
                if reset == "subtract":
                    m.addcmul_(r, thr, value=-1)  # - reset * thr (r is 0 or 1: exact)
            if fast:  # H(m - thr) == (m > thr) exactly in IEEE arithmetic
                r = torch.gt(m, thr, out=spk[t])
            else:
                r = spike_grad(m - thr)
                spikes.append(r)
            m_prev = m
        if not fast:
            spk = torch.stack(spikes).to(spk_dtype)
        ctx.spike_grad, ctx.reset, ctx.fast = spike_grad, reset, fast
        ctx.save_for_backward(mem, spk, beta, thr)  # its own outputs and the parameters only
        ctx.set_materialize_grads(False)  # the membrane output usually gets no gradient
        return spk, mem

    @staticmethod
    def backward(ctx, g_spk, g_mem):
        mem, spk, beta, thr = ctx.saved_tensors
        if g_spk is None:
            g_u = torch.zeros_like(mem)
        elif ctx.fast:
            g_u = ctx.fast(mem - thr, g_spk)
        else:
            # the surrogate's own backward applied to the incoming gradient: exactly what snnTorch
            # computes per step, for any elementwise surrogate, in one call over all steps
            with torch.enable_grad():
                u = (mem - thr).requires_grad_()
                (g_u,) = torch.autograd.grad(ctx.spike_grad(u), u, g_spk)
            if g_u.data_ptr() == g_spk.data_ptr():  # an identity backward: do not write into g_spk
                g_u = g_u.clone()
        g_thr = -sum_to(g_u, thr) if ctx.needs_input_grad[2] else None
        dm = g_u.add_(g_mem) if g_mem is not None else g_u  # d loss / d mem_t, filled in below
        # reverse time: dmem_t += (d mem_{t+1} / d mem_t) * dmem_{t+1}; resets are detached
        decay = beta * (1 - spk[:-1]) if ctx.reset == "zero" else None  # reset-to-zero cuts the path
        for t in range(mem.shape[0] - 2, -1, -1):
            dm[t].addcmul_(dm[t + 1], decay[t] if decay is not None else beta)
        g_beta = None
        if ctx.needs_input_grad[1]:
            prev = mem[:-1] * (1 - spk[:-1]) if ctx.reset == "zero" else mem[:-1]
            g_beta = sum_to(dm[1:] * prev, beta)
        if g_thr is not None and ctx.reset == "subtract":
            g_thr = g_thr - sum_to(dm[1:] * spk[:-1], thr)
        return dm, g_beta, g_thr, None, None


def fusable(lif: torch.nn.Module) -> bool:
    """Plain snn.Leaky as the models build it: what ``lif_fused`` reproduces exactly."""
    return (type(lif) is snn.Leaky and not lif.state_quant and not lif.inhibition and lif.reset_delay
            and float(lif.graded_spikes_factor) == 1.0 and not lif.init_hidden)


def lif_sequence(cur: torch.Tensor, beta: torch.Tensor, thr: torch.Tensor, spike_grad, reset: str):
    """The fused recurrence on the path that fits (``qsnn.nn.lif_gpu.triton_path``): the Triton
    kernels on CUDA, ``LIFSequence`` elsewhere; both give the same spikes and gradients."""
    use_triton, path = triton_path(cur, beta, spike_grad)
    log_path_once(path)
    fn = LIFTriton if use_triton else LIFSequence
    return fn.apply(cur, beta, thr, spike_grad, reset)


def lif_fused(cur: torch.Tensor, lif: snn.Leaky) -> tuple[torch.Tensor, torch.Tensor]:
    """Same results as ``lif_multistep`` (for ``fusable`` neurons), one autograd node per layer."""
    return lif_sequence(cur, lif.beta.clamp(0, 1), lif.threshold, lif.spike_grad, lif.reset_mechanism)


def make_neuron(kind: str, sigma_delta: dict | None, *leaky_args) -> nn.Module:
    """The neuron of one stage: "leaky" -> ``make_leaky(*leaky_args)``; "sigma_delta" -> the hybrid
    neuron of papers/004 configured by ``sigma_delta`` (model.sigma_delta)."""
    if kind == "sigma_delta":
        return SigmaDelta(**(sigma_delta or {}))
    return make_leaky(*leaky_args)


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

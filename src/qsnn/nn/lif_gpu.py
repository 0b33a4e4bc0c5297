"""Which LIF recurrence a layer runs, and the Triton path's autograd Function.

``qsnn.nn.neurons.lif_sequence`` asks ``triton_path`` per call: the Triton kernels
(``qsnn.nn.lif_triton``) when the tensors are on CUDA, triton imports, the dtype is float32 or
float64 and the surrogate has a closed form below; else the fused torch recurrence
(``LIFSequence``), which stays the CPU path and the reference the kernels are tested against.
Half-precision membranes (bf16/fp16 autocast) stay on the torch path: the kernel would round
differently from PyTorch's per-op rounding.

``USE_TRITON``: None (default) decides as above; True sends CPU tensors through the kernels too (with
``TRITON_INTERPRET=1`` set before the first use, Triton's interpreter runs them on the CPU:
tests/test_lif_triton.py); False keeps every device on the torch path (the bench's "fused torch" row).
"""
from __future__ import annotations

import functools
import inspect
import logging
import math

import torch

from qsnn.nn.surrogate.family import Surrogate

log = logging.getLogger("qsnn")
USE_TRITON: bool | None = None  # None: on CUDA; True: everywhere (tests, interpreter); False: never
RESETS = {"subtract": 0, "zero": 1, "none": 2}  # lif_triton.SUBTRACT, ZERO, NONE

# surrogate -> (kernel code, (p0, p1, p2) from its parameters); formulas in lif_triton._surrogate_grad
SNNTORCH = {  # snnTorch's closures, by name, from their closure variables (conf/surrogate/sigmoid.yaml is
    # the family's sigmoid_derivative: snnTorch's own sigmoid overflows to NaN, so it has no closed form here)
    "straight_through_estimator": (0, lambda p: (0.0, 0.0, 0.0)),
    "fast_sigmoid": (1, lambda p: (p["slope"], 0.0, 0.0)),
    "atan": (2, lambda p: (p["alpha"] / 2, math.pi / 2 * p["alpha"], 0.0)),
    "triangular": (4, lambda p: (p["threshold"], 0.0, 0.0)),
}
FAMILY = {  # qsnn.nn.surrogate.family shapes, from (gamma, beta, q)
    "rectangular": (5, lambda g, b, q: (g, 2 * b, 0.0)),
    "triangular": (6, lambda g, b, q: (g, b, 0.0)),
    "exponential": (7, lambda g, b, q: (g, -2 * b, 0.0)),
    "gaussian": (8, lambda g, b, q: (g, b, -math.pi)),
    "sigmoid_derivative": (9, lambda g, b, q: (4 * g, 4 * b, 0.0)),
    "fast_sigmoid": (10, lambda g, b, q: (g, 2 * b, 0.0)),
    "q_pseudo_spike": (11, lambda g, b, q: (g, 2 * b / (q - 1), q)),
}


def snntorch_surrogate(spike_grad) -> tuple[str, dict] | None:
    """(name, parameters) of one of snnTorch's surrogate closures (``surrogate.atan(alpha=2)`` ->
    ("atan", {"alpha": 2})), read from the closure; None for any other callable."""
    if getattr(spike_grad, "__module__", None) != "snntorch.surrogate":
        return None
    return _closure(spike_grad)


@functools.lru_cache(maxsize=None)
def _closure(fn) -> tuple[str, dict]:
    """Read once per closure: inspect.getclosurevars costs tens of microseconds, paid per layer and
    step otherwise (a GPU step is launch-bound: host time counts)."""
    return fn.__qualname__.split(".")[0], inspect.getclosurevars(fn).nonlocals


def surrogate_code(spike_grad) -> tuple[int, tuple[float, float, float]] | None:
    """The kernel's closed form of ``spike_grad``'s derivative: (code, parameters), or None."""
    if type(spike_grad) is Surrogate:
        code, params = FAMILY[spike_grad.shape]
        return code, tuple(float(v) for v in params(spike_grad.gamma, spike_grad.beta, spike_grad.q))
    named = snntorch_surrogate(spike_grad)
    if named is None or named[0] not in SNNTORCH:
        return None
    code, params = SNNTORCH[named[0]]
    return code, tuple(float(v) for v in params(named[1]))


def sum_to(g: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reduce a broadcast gradient back to the shape of ``like`` (a scalar or per-neuron parameter)."""
    return g.sum().reshape(like.shape) if like.numel() == 1 else g.sum_to_size(like.shape)


_kernels_module = None


def _kernels():
    """qsnn.nn.lif_triton, or the reason it cannot be used (a string)."""
    global _kernels_module
    if _kernels_module is None:
        try:
            from qsnn.nn import lif_triton

            _kernels_module = lif_triton
        except Exception as e:  # no triton, or a triton that cannot load here
            _kernels_module = f"triton not usable: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    return _kernels_module


def triton_path(cur: torch.Tensor, beta: torch.Tensor, spike_grad) -> tuple[bool, str]:
    """(use the kernels?, the path in words, for the log line)."""
    device = cur.device.type
    if USE_TRITON is False or (device != "cuda" and not USE_TRITON):
        return False, f"fused torch ({device})"
    dtype = torch.result_type(cur, beta)
    if dtype not in (torch.float32, torch.float64):
        return False, f"fused torch ({device}: {dtype} membrane; the kernel runs float32/float64)"
    if surrogate_code(spike_grad) is None:
        return False, f"fused torch ({device}: the kernel has no closed form for surrogate {spike_grad!r})"
    k = _kernels()
    if isinstance(k, str):
        return False, f"fused torch ({device}: {k})"
    return True, f"triton kernel ({device})"


_logged: set[str] = set()


def log_path_once(path: str) -> None:
    """One log line per process and path: which LIF recurrence this run uses."""
    if path not in _logged:
        _logged.add(path)
        log.info("LIF recurrence: %s", path)


_params_cache: dict = {}


def _params(values: tuple, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The surrogate's parameters as a tensor in the membrane's dtype (exact in float64), made once:
    no host-to-device copy per call (and none inside a CUDA graph capture)."""
    key = (values, dtype, device)
    if key not in _params_cache:
        _params_cache[key] = torch.tensor(values, dtype=dtype, device=device)
    return _params_cache[key]


def _per_neuron(v: torch.Tensor, shape: torch.Size, dtype: torch.dtype) -> torch.Tensor:
    """beta/threshold as one value or one per neuron of a step (broadcast over batch, seeds, ...)."""
    v = v.to(dtype)
    return v.reshape(1) if v.numel() == 1 else v.expand(shape).contiguous().view(-1)


class LIFTriton(torch.autograd.Function):
    """``LIFSequence`` on the Triton kernels: the same arguments, outputs and gradients."""

    @staticmethod
    def forward(ctx, cur, beta, thr, spike_grad, reset):
        k = _kernels()
        dtype = torch.result_type(cur, beta)
        mem = torch.empty(cur.shape, dtype=dtype, device=cur.device)
        spk = torch.empty(cur.shape, dtype=torch.promote_types(torch.float32, dtype), device=cur.device)
        T, step = cur.shape[0], cur.shape[1:]
        c = cur if cur[0].is_contiguous() else cur.contiguous()  # any time stride (0: a repeated input)
        b, t = _per_neuron(beta, step, dtype), _per_neuron(thr, step, dtype)
        k.forward(c, b, t, mem.view(T, -1), spk.view(T, -1), RESETS[reset])
        ctx.code, ctx.reset = surrogate_code(spike_grad), RESETS[reset]
        ctx.save_for_backward(mem, spk, beta, thr, b, t)
        ctx.set_materialize_grads(False)  # the membrane output usually gets no gradient
        return spk, mem

    @staticmethod
    def backward(ctx, g_spk, g_mem):
        mem, spk, beta, thr, b, t = ctx.saved_tensors
        T, n = mem.shape[0], mem[0].numel()
        (code, values), dtype = ctx.code, mem.dtype
        flat = [g.contiguous().view(T, n) if g is not None else None for g in (g_spk, g_mem)]
        dm = torch.empty_like(mem)
        g_beta, g_thr = torch.empty(2, n, dtype=dtype, device=mem.device)  # per neuron, written always
        _kernels().backward(mem.view(T, n), spk.view(T, n), *flat, b, t, _params(values, dtype, mem.device),
                            dm.view(T, n), g_beta, g_thr, ctx.reset, code)
        g_beta = sum_to(g_beta.view(mem.shape[1:]), beta) if ctx.needs_input_grad[1] else None
        g_thr = sum_to(g_thr.view(mem.shape[1:]), thr) if ctx.needs_input_grad[2] else None
        return dm, g_beta, g_thr, None, None

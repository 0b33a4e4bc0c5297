"""The fused LIF recurrence as two Triton kernels: one program per block of neurons, the loop over T
inside the kernel, so a layer's forward and backward are one launch each instead of several small
kernels per time step.

Imported only when the Triton path is taken (``qsnn.nn.lif_gpu``): importing triton costs time, and
``TRITON_INTERPRET=1`` (the tests' CPU interpreter) must be set before these kernels are decorated.

Forward, per neuron, in ``LIFSequence.forward``'s operation order (so float32 spikes are bit-identical):
    m_0 = I_0;   m_t = m_{t-1} * beta [* (1 - s_{t-1}) if zero] + I_t [- s_{t-1} * thr if subtract]
    s_t = m_t > thr
Launched with ``enable_fp_fusion=False``: on a GPU Triton would contract ``m * beta + I`` into one
fused multiply-add (one rounding instead of two), which PyTorch's separate ops do not do.

Backward, per neuron, reverse time (``LIFSequence.backward``): with g_u[t] = S'(m_t - thr) * g_spk[t],
    dm[t] = g_u[t] + g_mem[t] + dm[t+1] * beta [* (1 - s_t) if zero]     (resets are detached)
    g_beta = sum_t dm[t+1] * m_t [* (1 - s_t) if zero]
    g_thr  = -sum_t g_u[t] [- sum_t dm[t+1] * s_t if subtract]
g_beta and g_thr are per neuron here; the caller sums them over the broadcast dims.
S' is a closed form chosen at compile time (``SURR``: ``qsnn.nn.lif_gpu.SNNTORCH``/``FAMILY``) with
up to three parameters read from a small tensor in the membrane's dtype (exact in float64 too).
"""
from __future__ import annotations

import triton
import triton.language as tl

SUBTRACT, ZERO, NONE = 0, 1, 2  # reset modes, as the kernels' RESET constant


@triton.jit
def _surrogate_grad(v, g, p0, p1, p2, SURR: tl.constexpr):
    """g * dS/dv at v = mem - thr. Codes and parameters: ``qsnn.nn.lif_gpu.SNNTORCH``/``FAMILY``."""
    if SURR == 0:  # snnTorch straight_through_estimator: g
        out = g
    elif SURR == 1:  # snnTorch fast_sigmoid(k): g / (k |v| + 1)^2                (p0 = k)
        x = p0 * tl.abs(v) + 1
        out = g / (x * x)
    elif SURR == 2:  # snnTorch atan(a): (a/2) / (1 + (pi/2 a v)^2) * g            (p0 = a/2, p1 = pi/2 a)
        x = p1 * v
        out = p0 / (1 + x * x) * g
    elif SURR == 4:  # snnTorch triangular(p): g p where v < 0, -g p where v >= 0   (p0 = p)
        out = tl.where(v >= 0, -(g * p0), g * p0)
    elif SURR == 5:  # rectangular: gamma 1[|2 beta v| < 1]                      (p0 = gamma, p1 = 2 beta)
        out = g * tl.where(tl.abs(p1 * v) < 1, p0, 0)
    elif SURR == 6:  # triangular: gamma max(1 - |beta v|, 0)                    (p0 = gamma, p1 = beta)
        out = g * (p0 * tl.maximum(1 - tl.abs(p1 * v), 0))
    elif SURR == 7:  # exponential: gamma exp(-2 beta |v|)                       (p0 = gamma, p1 = -2 beta)
        out = g * (p0 * tl.exp(p1 * tl.abs(v)))
    elif SURR == 8:  # gaussian: gamma exp(-pi (beta v)^2)                       (p0 = gamma, p1 = beta, p2 = -pi)
        x = p1 * v
        out = g * (p0 * tl.exp(p2 * (x * x)))
    elif SURR == 9:  # sigmoid_derivative: 4 gamma s(z) s(-z), s = sigmoid, z = 4 beta v   (p0 = 4 gamma, p1 = 4 beta)
        z = p1 * v  # s(-z), not 1 - s(z): no cancellation where s ~ 1 (the family's own form)
        out = g * (p0 * (1 / (1 + tl.exp(-z))) * (1 / (1 + tl.exp(z))))
    elif SURR == 10:  # fast_sigmoid: gamma / (1 + 2 beta |v|)^2                 (p0 = gamma, p1 = 2 beta)
        x = 1 + p1 * tl.abs(v)
        out = g * (p0 / (x * x))
    else:  # q_pseudo_spike: gamma / (1 + 2 beta |v| / (q - 1))^q   (p0 = gamma, p1 = 2 beta / (q - 1), p2 = q)
        x = 1 + p1 * tl.abs(v)
        out = g * (p0 / tl.exp(p2 * tl.log(x)))  # x >= 1: x^q as exp(q log x)
    return out


# beta/threshold are read as ptr + neuron * stride, stride 0 for one shared value: a runtime
# argument (not a compile-time flag), so scalar and per-neuron parameters share one compiled kernel
@triton.jit(do_not_specialize=["T", "cur_stride_t", "beta_stride", "thr_stride"])
def _lif_forward(cur_ptr, beta_ptr, thr_ptr, mem_ptr, spk_ptr, T, N, cur_stride_t, beta_stride, thr_stride,
                 RESET: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    beta = tl.load(beta_ptr + offs * beta_stride, mask=mask)
    thr = tl.load(thr_ptr + offs * thr_stride, mask=mask)
    cur_p, mem_p, spk_p = cur_ptr + offs, mem_ptr + offs, spk_ptr + offs
    m = tl.load(cur_p, mask=mask).to(mem_ptr.dtype.element_ty)  # beta * 0 + I_0: step 0 has no reset
    s = m > thr
    tl.store(mem_p, m, mask=mask)
    tl.store(spk_p, s.to(spk_ptr.dtype.element_ty), mask=mask)
    for _ in range(1, T):
        cur_p += cur_stride_t  # pointer steps: no int32 overflow of t * N on big layers
        mem_p += N
        spk_p += N
        i = tl.load(cur_p, mask=mask).to(mem_ptr.dtype.element_ty)
        r = s.to(mem_ptr.dtype.element_ty)
        m = m * beta
        if RESET == 1:
            m = m * (1 - r)
        m = m + i
        if RESET == 0:
            m = m - r * thr
        s = m > thr
        tl.store(mem_p, m, mask=mask)
        tl.store(spk_p, s.to(spk_ptr.dtype.element_ty), mask=mask)


@triton.jit(do_not_specialize=["T", "beta_stride", "thr_stride"])
def _lif_backward(mem_ptr, spk_ptr, gspk_ptr, gmem_ptr, beta_ptr, thr_ptr, par_ptr, dm_ptr, gbeta_ptr, gthr_ptr,
                  T, N, beta_stride, thr_stride, RESET: tl.constexpr, SURR: tl.constexpr,
                  HAS_GSPK: tl.constexpr, HAS_GMEM: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    beta = tl.load(beta_ptr + offs * beta_stride, mask=mask)
    thr = tl.load(thr_ptr + offs * thr_stride, mask=mask)
    p0, p1, p2 = tl.load(par_ptr), tl.load(par_ptr + 1), tl.load(par_ptr + 2)
    last = tl.cast(T - 1, tl.int64) * N  # start at step T-1 and walk back
    mem_p, spk_p, dm_p = mem_ptr + last + offs, spk_ptr + last + offs, dm_ptr + last + offs
    gspk_p, gmem_p = gspk_ptr + last + offs, gmem_ptr + last + offs
    zero = tl.zeros([BLOCK], dtype=mem_ptr.dtype.element_ty)
    nxt, g_beta, g_thr = zero, zero, zero  # nxt: dm[t+1] (0 beyond the last step)
    for _ in range(T):
        m = tl.load(mem_p, mask=mask)
        s = tl.load(spk_p, mask=mask).to(m.dtype)
        if HAS_GSPK:
            g_u = _surrogate_grad(m - thr, tl.load(gspk_p, mask=mask).to(m.dtype), p0, p1, p2, SURR)
        else:
            g_u = zero
        d = g_u + tl.load(gmem_p, mask=mask).to(m.dtype) if HAS_GMEM else g_u
        if RESET == 1:  # reset-to-zero cuts the path through a spiking step
            d = d + nxt * (beta * (1 - s))
            prev = m * (1 - s)
        else:
            d = d + nxt * beta
            prev = m
        g_beta = g_beta + nxt * prev
        g_thr = g_thr - g_u
        if RESET == 0:
            g_thr = g_thr - nxt * s
        tl.store(dm_p, d, mask=mask)
        nxt = d
        mem_p -= N
        spk_p -= N
        dm_p -= N
        gspk_p -= N
        gmem_p -= N
    tl.store(gbeta_ptr + offs, g_beta, mask=mask)  # per neuron; N values: cheaper than another variant
    tl.store(gthr_ptr + offs, g_thr, mask=mask)


def block_size(n: int) -> int:
    """Neurons per program. The T loop is latency-bound, so small layers want many small programs
    (an H200 has 132 multiprocessors); big ones wider blocks (vector loads). A guess to tune on a GPU."""
    return 128 if n < (1 << 19) else 512


def _stride(v) -> int:
    return int(v.numel() > 1)


def forward(cur, beta, thr, mem, spk, reset: int) -> None:
    """Fill ``mem``/``spk`` [T, N] from ``cur`` ([T, N] with any time stride, neurons contiguous);
    beta/thr: one value or N values, in the membrane's dtype."""
    T, N = mem.shape
    block = block_size(N)
    _lif_forward[(triton.cdiv(N, block),)](cur, beta, thr, mem, spk, T, N, cur.stride(0), _stride(beta),
                                           _stride(thr), RESET=reset, BLOCK=block, num_warps=4,
                                           enable_fp_fusion=False)


def backward(mem, spk, g_spk, g_mem, beta, thr, params, dm, g_beta, g_thr, reset: int, surr: int) -> None:
    """Fill ``dm`` [T, N] and the per-neuron ``g_beta``/``g_thr`` [N]; g_spk/g_mem: [T, N] contiguous,
    or None for no gradient."""
    T, N = mem.shape
    block = block_size(N)
    _lif_backward[(triton.cdiv(N, block),)](
        mem, spk, g_spk if g_spk is not None else mem, g_mem if g_mem is not None else mem, beta, thr, params,
        dm, g_beta, g_thr, T, N, _stride(beta), _stride(thr), RESET=reset, SURR=surr,
        HAS_GSPK=g_spk is not None, HAS_GMEM=g_mem is not None, BLOCK=block, num_warps=4, enable_fp_fusion=False)

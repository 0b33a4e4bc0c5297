"""The physical floor of a training step: arithmetic time + memory-traffic time at a device's peak rates.

FLOPs: counted by ``torch.utils.flop_counter.FlopCounterMode`` over one forward and backward (convs and
matmuls, forward and both backward products; elementwise work is left out: it is memory-bound and
counted as traffic). Bytes: a model of the traffic no implementation of this layer-by-layer step can
avoid, per LIF layer of T*B*N neuron-steps, ``ACT_PASSES`` passes: the op writes the current and the
LIF reads it, the LIF writes spikes and membrane; the next op reads the spikes (forward, and again for
its weight gradient); backward reads membrane and spike gradient, writes the current's gradient, which
the op reads twice (input and weight gradients) and the previous layer's spike gradient is written;
plus ``PARAM_PASSES`` passes over the parameters (forward, backward, Adam's weight, gradient and two
moments). The floor is FLOPs / peak FLOP/s (convs and matmuls each at their rate) + bytes / peak
bytes/s: the share printed is floor / measured.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
from torch.utils.flop_counter import FlopCounterMode

from qsnn.nn import lif_gpu, neurons

ACT_PASSES, PARAM_PASSES = 12, 8
# assumed peak rates by device name (vendor sheets, SXM, dense): (TF32 tensor-core FLOP/s, plain
# float32 FLOP/s, memory bytes/s). torch runs float32 convs in TF32 by default (cudnn.allow_tf32) but
# float32 matmuls in full float32 unless torch.backends.cuda.matmul.allow_tf32 (``--tf32``)
PEAKS = {
    "H200": (495e12, 67e12, 4.8e12),
    "H100": (495e12, 67e12, 3.35e12),
}
DEFAULT_PEAK = PEAKS["H200"]


def peaks(device: torch.device) -> tuple[float, float, float, str]:
    """(conv FLOP/s, matmul FLOP/s, bytes/s, what was assumed) for ``device``; zeros on a CPU (no floor)."""
    if device.type != "cuda":
        return 0.0, 0.0, 0.0, "no floor on CPU"
    name = torch.cuda.get_device_name(device)
    tf32, fp32, bw = next((v for k, v in PEAKS.items() if k in name), DEFAULT_PEAK)
    mm = tf32 if torch.backends.cuda.matmul.allow_tf32 else fp32
    mm_kind = "TF32" if mm == tf32 else "float32: TF32 off"
    return tf32, mm, bw, (f"{name}: assumed peaks {tf32 / 1e12:.0f} TFLOP/s for convs (TF32), {mm / 1e12:.0f} "
                          f"TFLOP/s for matmuls ({mm_kind}), {bw / 1e12:.2f} TB/s")


@contextmanager
def _lif_sizes(sizes: list[int]):
    """Record the number of neuron-steps of every fused LIF layer called inside (the bench's nets)."""
    orig = neurons.lif_sequence

    def recording(cur, *args):
        sizes.append(cur.numel())
        return orig(cur, *args)

    neurons.lif_sequence = recording
    try:
        yield
    finally:
        neurons.lif_sequence = orig


def step_work(net, loss_fn, x, y) -> tuple[float, float, float]:
    """(conv FLOPs, matmul FLOPs, bytes) of one training step of ``net`` (a SpikingNet, impl="fast")."""
    sizes: list[int] = []
    use, lif_gpu.USE_TRITON = lif_gpu.USE_TRITON, False  # count on the torch path (the same work)
    try:
        with FlopCounterMode(display=False) as fc, _lif_sizes(sizes):
            spk, _ = net(x)
            loss_fn(spk, y).backward()
    finally:
        lif_gpu.USE_TRITON = use
    net.zero_grad(set_to_none=True)
    by_op = fc.get_flop_counts()["Global"]
    conv = sum(v for op, v in by_op.items() if "conv" in str(op))
    elt = x.element_size()
    params = sum(p.numel() for p in net.parameters())
    nbytes = ACT_PASSES * elt * sum(sizes) + PARAM_PASSES * elt * params
    return float(conv), float(sum(by_op.values()) - conv), float(nbytes)


def floor_s(work: tuple[float, float, float], device: torch.device) -> float | None:
    """Seconds of arithmetic plus memory traffic at the peak rates; None on a CPU."""
    conv_rate, mm_rate, bw, _ = peaks(device)
    conv, mm, nbytes = work
    return conv / conv_rate + mm / mm_rate + nbytes / bw if bw else None


def describe(work: tuple[float, float, float]) -> str:
    return f"{(work[0] + work[1]) / 1e9:.1f} GFLOP, {work[2] / 1e9:.2f} GB"

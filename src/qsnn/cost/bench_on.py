"""The Open Neuromorphic SNN library benchmark (Lenz et al. 2023, open-neuromorphic.org): one
Linear(n, n) and one LIF layer, batch 16, T=500, the time of a forward plus backward pass.

Run for qsnn (``SpikingNet`` fast path: one matmul over all steps, the fused LIF; on CUDA the Triton
kernels), the snnTorch loop (the same net with impl="snntorch": ``snn.Leaky`` called per step) and
SpikingJelly's multistep ``LIFNode`` (2.x picks its own Triton/CUDA kernels on a GPU; the torch loop
on CPU). The neurons are made alike: beta = 0.5 (SpikingJelly tau=2, decay_input=False), threshold 1,
reset by subtraction (v_reset=None, detached), arctan surrogate (alpha=2). Input: random currents
[T, 16, n]; loss: the sum of the output spikes. SpikingJelly is optional (the ``peers`` extra); if it
cannot be imported or run, the row says why.
"""
from __future__ import annotations

import statistics
import time

import torch
from snntorch import surrogate
from torch import nn

from qsnn.cost.bench_floor import floor_s, peaks, step_work
from qsnn.cost.bench_gpu import peak_memory, sync
from qsnn.nn.net import SpikingNet, Stage
from qsnn.nn.neurons import make_leaky

T, B = 500, 16
LIBS = ("qsnn", "snntorch", "spikingjelly")


def qsnn_net(n: int, impl: str) -> SpikingNet:
    torch.manual_seed(0)
    return SpikingNet([Stage(nn.Linear(n, n), make_leaky(0.5, 1.0, surrogate.atan(2.0)))], impl=impl)


def spikingjelly_net(n: int) -> nn.Module:
    from spikingjelly.activation_based import layer, neuron
    from spikingjelly.activation_based import surrogate as sj_surrogate

    torch.manual_seed(0)
    return nn.Sequential(layer.Linear(n, n, step_mode="m"),
                         neuron.LIFNode(tau=2.0, decay_input=False, v_threshold=1.0, v_reset=None,
                                        surrogate_function=sj_surrogate.ATan(alpha=2.0), detach_reset=True,
                                        step_mode="m"))


def _fwd_bwd(lib: str, n: int, device: torch.device):
    """A function running one forward + backward of ``lib``'s net on fixed random input."""
    x = torch.randn(T, B, n, generator=torch.Generator().manual_seed(1)).to(device)
    if lib == "spikingjelly":
        from spikingjelly.activation_based import functional

        net = spikingjelly_net(n).to(device)

        def step():
            functional.reset_net(net)  # membrane state from the last pass
            net(x).sum().backward()
    else:
        net = qsnn_net(n, "fast" if lib == "qsnn" else "snntorch").to(device)

        def step():
            net(x)[0].sum().backward()
    return net, step


def time_lib(lib: str, n: int, device: torch.device, repeats: int) -> dict:
    """Median seconds of forward + backward (after one warm-up), peak GPU memory; or why it failed."""
    try:
        net, step = _fwd_bwd(lib, n, device)
        step()  # warm-up: kernels compiled, allocator primed
        times = []
        for _ in range(repeats):
            net.zero_grad(set_to_none=True)
            sync(device)
            t = time.perf_counter()
            step()
            sync(device)
            times.append(time.perf_counter() - t)
        net.zero_grad(set_to_none=True)
        return {"s": statistics.median(times), "peak": peak_memory(step, device)}
    except Exception as e:  # an optional peer that is missing or fails here: say why, go on
        return {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}


def floor_of(n: int, device: torch.device) -> float | None:
    net = qsnn_net(n, "fast").to(device)
    x = torch.randn(T, B, n).to(device)
    return floor_s(step_work(net, lambda spk, _: spk.sum(), x, None), device)


def run(sizes: list[int], device: torch.device, repeats: int) -> None:
    print(f"\nOpen Neuromorphic SNN library benchmark (Lenz et al. 2023): Linear(n, n) + LIF, batch {B}, T={T}, "
          f"forward + backward, median of {repeats} after one warm-up, on {device}"
          + (f" ({peaks(device)[3]})" if device.type == "cuda" else "") + ":", flush=True)
    for n in sizes:
        rows = {lib: time_lib(lib, n, device, repeats) for lib in LIBS}
        floor = floor_of(n, device)
        for lib, r in rows.items():
            if "error" in r:
                print(f"  n={n:5d} {lib:12s} not run: {r['error']}", flush=True)
                continue
            mem = f"  peak {r['peak'] / 2**20:8.0f} MiB" if r["peak"] is not None else ""
            share = f"  {100 * floor / r['s']:5.1f}% of the floor ({floor * 1e3:.2f} ms)" if floor else ""
            ours = rows["qsnn"].get("s")
            vs = f"  (qsnn {r['s'] / ours:.1f}x faster)" if lib != "qsnn" and ours else ""
            print(f"  n={n:5d} {lib:12s} {r['s'] * 1e3:9.1f} ms{mem}{share}{vs}", flush=True)

"""NeuroBench-style cost of a trained SpikingNet: memory, sparsity, synaptic operations, rates.

Definitions follow NeuroBench (neurobench.metrics, v2.3); we compute them here because its
``Footprint`` counts fake-quantized weights at 32 bits (element size, not bit-width) and its
synaptic-operation counter binarizes a deep copy of each layer's ``weight.data``, which a
parametrized (quantized) layer does not have. ``tests/test_metrics.py`` checks both against
hand-counted networks, and against neurobench itself where it applies (float models).

- footprint: parameters at the trained bit-width (plus one fp32 scale per quantized
  tensor/channel, ``quant.apply.weight_bits``) + buffers as stored (BatchNorm statistics,
  neuron constants; not the neuron state ``mem``). ``footprint_saving`` = 1 - bytes / bytes
  of the same net stored at 32 bits.
- connection sparsity: fraction of zero weights (after quantization) in Linear/Conv layers.
- activation sparsity: fraction of zero spikes over all neurons, time steps and samples;
  ``rate_mean`` = 1 - activation sparsity, ``rate_layer{i}`` the same per stage.
- synaptic operations per sample, summed over time steps: for each Linear/Conv call, the
  number of (nonzero input, nonzero weight) pairs = nonzero inputs x their fan-out. Inputs
  that are all in {-1, 0, 1} are spikes: accumulates (``synops_ac``); otherwise multiply-
  accumulates (``synops_mac``, e.g. the first layer under direct encoding). ``synops_dense``
  counts every pair. Biases are not synaptic operations.

The workload is measured with forward hooks over the reference step-by-step loop
(``impl="snntorch"``): every layer then sees exactly one time step per call, which the fast
path (first layer run once for a repeated input, fused conv+pool, fused LIF) does not give.

After a test, the workload is measured on the first ``cost.max_batches`` test batches (a fixed
sample: the test loader is not shuffled), not the whole test set: the step loop costs several
fast-path forwards, and over 10,000 MNIST images it took a third of a one-epoch run. The static
metrics (footprint, connection sparsity) do not depend on it. ``cost/batches`` and
``cost/samples`` in the metrics (and summary.json) say how many were counted; with
``cost.max_batches`` at least the number of test batches (or null) every batch is counted
and the values are exact. Sampled rates and operations per sample are means over the sampled
images: their error is the sampling error of a mean over ``cost/samples`` images.
"""
from __future__ import annotations

import contextlib
import logging
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from qsnn.nn.quant.apply import weight_bits, weight_layers

log = logging.getLogger("qsnn")


def param_count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def _buffer_bytes(net: nn.Module) -> int:
    # "mem" is a neuron's running state, not something a deployed model stores
    return sum(b.numel() * b.element_size() for name, b in net.named_buffers() if name.rsplit(".", 1)[-1] != "mem")


def footprint(net: nn.Module, bits: int) -> dict[str, float]:
    size = weight_bits(net, bits) / 8 + _buffer_bytes(net)
    fp32 = param_count(net) * 4 + _buffer_bytes(net)
    return {"footprint_bytes": size, "footprint_fp32_bytes": fp32, "footprint_saving": 1 - size / fp32}


@torch.no_grad()
def connection_sparsity(net: nn.Module) -> float:
    zeros = total = 0
    for layer in weight_layers(net):
        w = layer.weight  # the quantized weight when a quantizer is registered
        zeros += int((w == 0).sum())
        total += w.numel()
    return zeros / max(total, 1)


def _pairs(layer: nn.Module, x: torch.Tensor, w: torch.Tensor) -> float:
    """Sum over outputs of the number of (input, weight) pairs with both nonzero (x, w binary)."""
    y = F.linear(x, w) if isinstance(layer, nn.Linear) else layer._conv_forward(x, w, None)
    return float(y.sum(dtype=torch.float64))


class Workload:
    """Hooks that count spikes per stage and synaptic operations per layer; use as a context."""

    def __init__(self, net: nn.Module):
        self.net = net
        self.layers, self.lifs = weight_layers(net), [st.lif for st in net.stages]
        self.spikes = [0.0] * len(self.lifs)
        self.neurons = [0.0] * len(self.lifs)
        self.ac = self.mac = self.dense = 0.0
        self.samples = self.batches = 0
        self._handles: list = []

    def _on_layer(self, layer, inputs, output):
        x = inputs[0].detach().float()
        with torch.autocast(x.device.type, enabled=False):  # counts must not round in bf16
            w = layer.weight.detach().float()
            ops = _pairs(layer, (x != 0).float(), (w != 0).float())
            self.dense += _pairs(layer, torch.ones_like(x), torch.ones_like(w))
        if bool(((x == 0) | (x == 1) | (x == -1)).all()):
            self.ac += ops
        else:
            self.mac += ops

    def _on_lif(self, i):
        def hook(module, inputs, output):
            spk = output[0] if isinstance(output, tuple) else output
            self.spikes[i] += float(torch.count_nonzero(spk))
            self.neurons[i] += spk.numel()
        return hook

    @contextlib.contextmanager
    def counting(self):
        impl = self.net.impl
        self.net.impl = "snntorch"  # the reference loop: one time step per layer call
        self._handles = [m.register_forward_hook(self._on_layer) for m in self.layers]
        self._handles += [lif.register_forward_hook(self._on_lif(i)) for i, lif in enumerate(self.lifs)]
        try:
            yield self
        finally:
            for h in self._handles:
                h.remove()
            self.net.impl = impl

    @torch.no_grad()
    def run(self, batches: Iterable[torch.Tensor]) -> "Workload":
        """Forward each encoded batch [T, B, ...] through the net, counting."""
        was_training = self.net.training
        self.net.eval()
        with self.counting():
            for x in batches:
                self.net(x)
                self.samples += x.shape[1]
                self.batches += 1
        self.net.train(was_training)
        return self

    def compute(self) -> dict[str, float]:
        n = max(self.samples, 1)
        spikes, neurons = sum(self.spikes), max(sum(self.neurons), 1)
        out = {"activation_sparsity": 1 - spikes / neurons, "rate_mean": spikes / neurons,
               "synops": (self.ac + self.mac) / n, "synops_ac": self.ac / n, "synops_mac": self.mac / n,
               "synops_dense": self.dense / n, "batches": self.batches, "samples": self.samples}
        out.update({f"rate_layer{i}": s / max(m, 1) for i, (s, m) in enumerate(zip(self.spikes, self.neurons))})
        return out


def cost_metrics(net: nn.Module, bits: int, batches: Iterable[torch.Tensor]) -> dict[str, float]:
    """All metrics above, static and measured over ``batches``; keys prefixed ``cost/``."""
    out = {"params": param_count(net), **footprint(net, bits), "connection_sparsity": connection_sparsity(net),
           **Workload(net).run(batches).compute()}
    return {f"cost/{k}": float(v) for k, v in out.items()}


def encoded_test_batches(dm, device: torch.device, limit: int | float | None = None,
                         dtype: torch.dtype | None = None):
    """The data module's encoded test batches on ``device`` (``limit``: at most that many), floating
    inputs in ``dtype`` as Lightning's precision plugin casts them (a precision=64 run's net is float64)."""
    for i, batch in enumerate(dm.test_dataloader()):
        if limit is not None and i >= limit:
            return
        x = batch[0].to(device)
        x = x.to(dtype) if dtype is not None and x.is_floating_point() else x
        x, _ = dm.on_after_batch_transfer((x, batch[1]), 0)
        yield x


def cost_batches(num_test_batches: int | float | None, max_batches: int | None) -> int | float | None:
    """How many test batches the cost pass counts: those the test used, at most ``max_batches``."""
    if max_batches is None:
        return num_test_batches
    return int(max_batches) if num_test_batches is None else min(num_test_batches, int(max_batches))


def log_test_cost(trainer, module, dm, loggers: list, max_batches: int | None = None) -> dict[str, float]:
    """After ``trainer.test``: cost metrics of the tested net over the first ``max_batches`` of the
    batches the test used (all of them: None), logged to ``loggers``; computed on rank 0 only (no
    collective, nothing to sync)."""
    if not trainer.is_global_zero:
        return {}
    limit = cost_batches(trainer.num_test_batches[0] if trainer.num_test_batches else None, max_batches)
    try:
        cost = cost_metrics(module.net, module.hparams.bits,
                            encoded_test_batches(dm, module.device, limit, module.dtype))
    except Exception as e:  # a net the counters do not understand must not fail a finished run
        log.warning("cost metrics skipped: %s: %s", type(e).__name__, e)
        return {}
    for lg in loggers:
        lg.log_metrics(cost, step=trainer.global_step)
    return cost

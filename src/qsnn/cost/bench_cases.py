"""The benchmarked training steps: csnn and fcsnn as ``make bench`` builds them (4-bit weights,
fast_sigmoid(25), direct encoding, mse_count loss, Adam), shared by the CPU and GPU benchmarks."""
from __future__ import annotations

from functools import partial
from pathlib import Path

import torch
from snntorch import surrogate
from snntorch.functional import mse_count_loss

from qsnn.nn.models.csnn import csnn
from qsnn.nn.models.fcsnn import fcsnn
from qsnn.nn.quant.apply import quantize_weights
from qsnn.nn.quant.uniform import UniformSTEQuantizer
from qsnn.nn.speed import fused_on_cuda

ROOT = Path(__file__).resolve().parents[3]
CASES = {  # name: (builder kwargs, batch, steps, input shape)
    "csnn": (dict(model=csnn, channels=(16, 64), batchnorm=True, beta=0.5), 128, 25, (1, 28, 28)),
    "fcsnn": (dict(model=fcsnn, hidden=(128,), beta=0.9), 64, 10, (1, 8, 8)),
}


def build(case: str, impl: str, seed: int = 0, batch: int | None = None, device="cpu", capturable: bool = False):
    """Network, optimizer, loss, and one batch (direct encoding: an expanded view, as the data module gives),
    on ``device`` (Adam fused there on CUDA, as runs build it; ``capturable`` for a CUDA graph)."""
    kw, default_batch, steps, shape = CASES[case]
    batch = batch or default_batch
    kw = dict(kw)
    model = kw.pop("model")
    torch.manual_seed(seed)
    net = model(input_shape=shape, num_classes=10, spike_grad=surrogate.fast_sigmoid(25), impl=impl, **kw)
    net = quantize_weights(net, lambda: UniformSTEQuantizer(4), bits=4).to(device)
    g = torch.Generator().manual_seed(seed)
    img = torch.rand(batch, *shape, generator=g).to(device)
    y = torch.randint(0, 10, (batch,), generator=g).to(device)
    adam = partial(torch.optim.Adam, lr=1e-3, **({"capturable": True} if capturable else {}))
    return net, fused_on_cuda(adam)(params=net.parameters()), mse_count_loss(0.8, 0.2), img.expand(steps, *img.shape), y

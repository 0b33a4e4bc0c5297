"""Fewer kernel launches per training step on a GPU, off (or a no-op) on CPU.

On a GPU a small SNN's step is bound by kernel launches, not arithmetic (issue 21: a csnn step at
B=128 and B=1024 costs nearly the same). Besides the LIF kernels (``qsnn.nn.lif_gpu``):

- ``fused_on_cuda``: the optimizer as one fused kernel per step (``fused=True``: Adam, AdamW, SGD)
  when every parameter is on CUDA. On CPU the factory is called exactly as before, so CPU runs stay
  bit-identical.
- ``compile_net``: the ``compile`` config switch: ``torch.compile`` of the net's forward (AOTAutograd
  compiles its backward with it); ``compile=reduce-overhead`` replays it as CUDA graphs (one launch
  per graph instead of one per kernel). ``nn.Module.compile`` compiles in place, so parameter names,
  checkpoints and Lightning's loop are unchanged. Off by default.
"""
from __future__ import annotations

import inspect
from functools import partial

import torch
from torch import nn

from qsnn.errors import ConfigError

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")


def _tensors(params) -> list[torch.Tensor]:
    """The parameters an optimizer gets, given as tensors or as param-group dicts."""
    out = []
    for p in params:
        out.extend(p["params"] if isinstance(p, dict) else [p])
    return out


def fused_on_cuda(factory):
    """Wrap an optimizer factory (``instantiate(cfg.optim)``, a partial) so that it passes
    ``fused=True`` when all parameters are on CUDA and the optimizer takes ``fused`` (and the config
    did not set it); anything else is built exactly as the factory builds it."""
    cls = factory.func if isinstance(factory, partial) else factory
    takes_fused = "fused" in inspect.signature(cls).parameters
    set_already = isinstance(factory, partial) and "fused" in factory.keywords

    def build(params, **kw):
        params = list(params)
        tensors = _tensors(params)
        if takes_fused and not set_already and tensors and all(p.is_cuda for p in tensors):
            kw["fused"] = True
        return factory(params=params, **kw)

    return build


def compile_net(net: nn.Module, mode) -> nn.Module:
    """``compile``: false (nothing), true (torch.compile's default mode) or one of ``COMPILE_MODES``."""
    if mode is False or mode is None:
        return net
    if mode is not True and mode not in COMPILE_MODES:
        raise ConfigError(f"compile={mode!r} is not allowed: use false, true or one of {', '.join(COMPILE_MODES)}")
    net.compile(mode=None if mode is True else mode)
    return net

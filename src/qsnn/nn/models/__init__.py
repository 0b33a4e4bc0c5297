"""Model builders: plain functions returning a ``qsnn.nn.net.SpikingNet``. Every builder makes the
neurons of its stages with ``neuron_factory`` from the same ``model.*`` keys."""
from __future__ import annotations

from typing import Callable

from torch import nn

from qsnn.nn.neurons import make_neuron


def neuron_factory(spike_grad, beta: float, threshold: float = 1.0, learn_beta: bool = False,
                   learn_threshold: bool = False, reset: str = "subtract", state_quant=None, neuron: str = "leaky",
                   sigma_delta: dict | None = None) -> Callable[[], nn.Module]:
    """A function that makes one stage's neuron: an snnTorch Leaky (``beta``, ``threshold``, learned
    or fixed, ``reset`` subtract|zero|none, optional membrane quantizer ``state_quant``), or the
    sigma-delta neuron of papers/004 (``neuron="sigma_delta"``, configured by ``sigma_delta``)."""
    def make() -> nn.Module:
        return make_neuron(neuron, sigma_delta, beta, threshold, spike_grad, learn_beta, learn_threshold, reset,
                           state_quant)
    return make

"""Fully connected SNN: flatten -> [Linear -> Leaky] x len(hidden) -> Linear -> Dropout -> Leaky."""
from __future__ import annotations

import math
from typing import Sequence

from torch import nn

from qsnn.net import SpikingNet, Stage
from qsnn.neurons import make_neuron


def fcsnn(
    input_shape: Sequence[int],
    num_classes: int,
    spike_grad,
    hidden: Sequence[int] = (128,),
    beta: float = 0.9,
    threshold: float = 1.0,
    learn_beta: bool = False,
    learn_threshold: bool = False,
    reset: str = "subtract",
    dropout: float = 0.0,
    bias: bool = True,
    impl: str = "fast",
    state_quant=None,
    neuron: str = "leaky",
    sigma_delta: dict | None = None,
) -> SpikingNet:
    def leaky():
        return make_neuron(neuron, sigma_delta, beta, threshold, spike_grad, learn_beta, learn_threshold, reset,
                           state_quant)

    sizes = [math.prod(input_shape), *hidden]
    stages = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        op = nn.Sequential(nn.Flatten(), nn.Linear(n_in, n_out, bias=bias)) if i == 0 else nn.Linear(n_in, n_out, bias=bias)
        stages.append(Stage(op, leaky()))
    head = [nn.Flatten()] if len(sizes) == 1 else []
    head += [nn.Linear(sizes[-1], num_classes, bias=bias), nn.Dropout(dropout)]
    stages.append(Stage(nn.Sequential(*head), leaky()))
    return SpikingNet(stages, impl=impl)

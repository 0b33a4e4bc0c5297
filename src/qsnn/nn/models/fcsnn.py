"""Fully connected SNN: flatten -> [Linear -> Leaky] x len(hidden) -> Linear -> Dropout -> Leaky.
``beta`` and ``**neuron`` (threshold, learn_beta, learn_threshold, reset, state_quant, neuron,
sigma_delta) configure every stage's neuron: see ``qsnn.nn.models.neuron_factory``."""
from __future__ import annotations

import math
from typing import Sequence

from torch import nn

from qsnn.nn.net import SpikingNet, Stage
from qsnn.nn.models import neuron_factory


def fcsnn(
    input_shape: Sequence[int],
    num_classes: int,
    spike_grad,
    hidden: Sequence[int] = (128,),
    dropout: float = 0.0,
    bias: bool = True,
    impl: str = "fast",
    beta: float = 0.9,
    **neuron,
) -> SpikingNet:
    leaky = neuron_factory(spike_grad, beta, **neuron)

    sizes = [math.prod(input_shape), *hidden]
    stages = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        op = nn.Sequential(nn.Flatten(), nn.Linear(n_in, n_out, bias=bias)) if i == 0 else nn.Linear(n_in, n_out, bias=bias)
        stages.append(Stage(op, leaky()))
    head = [nn.Flatten()] if len(sizes) == 1 else []
    head += [nn.Linear(sizes[-1], num_classes, bias=bias), nn.Dropout(dropout)]
    stages.append(Stage(nn.Sequential(*head), leaky()))
    return SpikingNet(stages, impl=impl)

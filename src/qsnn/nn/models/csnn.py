"""The reference QSNN conv net (Eshraghian et al. 2022, jeshraghian/QSNNs):

conv5x5 (no padding, no bias) -> avgpool2 -> [BatchNorm] -> Leaky
-> conv5x5 -> avgpool2 -> [BatchNorm] -> Leaky -> flatten -> linear -> Dropout -> Leaky.
The fc input size is inferred from ``input_shape`` (e.g. 1x28x28 with 16-64 channels -> 1024).
``fc_bias``: the reference's full-precision fc layer has a bias, its quantized one
(Brevitas ``QuantLinear(bias=False)``) has none.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from qsnn.nn.net import SpikingNet, Stage
from qsnn.nn.models import neuron_factory


class ConvAvgPool2d(nn.Sequential):
    """conv (stride 1) -> AvgPool2d(2). ``forward`` runs the two layers (the reference);
    ``fused_fn()`` gives the same map as ONE stride-2 conv whose (k+1)x(k+1) kernel is the mean
    of the kernel shifted to the 4 pool offsets: 2.8x fewer FLOPs for k=5, about 2x faster
    forward+backward on CPU. Same function up to float rounding (~1e-5 in float32).
    Parameters keep the plain layers' names (``0.weight``), so checkpoints do not change."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = False):
        super().__init__(nn.Conv2d(in_channels, out_channels, kernel_size, bias=bias), nn.AvgPool2d(2))

    def fused_fn(self):
        conv = self[0]
        w = conv.weight  # the quantized weight when a quantizer is registered (parametrize)
        k = F.pad(w, (0, 1, 0, 1)) + F.pad(w, (1, 0, 0, 1)) + F.pad(w, (0, 1, 1, 0)) + F.pad(w, (1, 0, 1, 0))
        k = k * 0.25
        return lambda x: F.conv2d(x, k, conv.bias, stride=2, groups=conv.groups)


def conv_out_shape(input_shape: Sequence[int], channels: Sequence[int], kernel_size: int) -> tuple[int, ...]:
    c, h, w = input_shape
    for ch in channels:
        h, w = (h - kernel_size + 1) // 2, (w - kernel_size + 1) // 2
        c = ch
    if h < 1 or w < 1:
        raise ValueError(
            f"model=csnn: input {tuple(input_shape)} is too small for {len(channels)} conv{kernel_size}+pool2 blocks"
        )
    return c, h, w


def csnn(
    input_shape: Sequence[int],
    num_classes: int,
    spike_grad,
    channels: Sequence[int] = (16, 64),
    kernel_size: int = 5,
    batchnorm: bool = True,
    dropout: float = 0.0,
    fc_bias: bool = True,
    impl: str = "fast",
    beta: float = 0.5,
    **neuron,
) -> SpikingNet:
    """``beta`` and ``**neuron`` (threshold, learn_beta, learn_threshold, reset, state_quant, neuron,
    sigma_delta) configure every stage's neuron: see ``qsnn.nn.models.neuron_factory``."""
    leaky = neuron_factory(spike_grad, beta, **neuron)

    stages, c_in = [], input_shape[0]
    for ch in channels:
        op = ConvAvgPool2d(c_in, ch, kernel_size)
        stages.append(Stage(op, leaky(), nn.BatchNorm2d(ch) if batchnorm else None))
        c_in = ch
    fc_in = math.prod(conv_out_shape(input_shape, channels, kernel_size))
    head = nn.Sequential(nn.Flatten(), nn.Linear(fc_in, num_classes, bias=fc_bias), nn.Dropout(dropout))
    stages.append(Stage(head, leaky()))
    return SpikingNet(stages, impl=impl)

"""The reference QSNN conv net (Eshraghian et al. 2022, jeshraghian/QSNNs):

conv5x5 (no padding, no bias) -> avgpool2 -> [BatchNorm] -> Leaky
-> conv5x5 -> avgpool2 -> [BatchNorm] -> Leaky -> flatten -> linear -> Dropout -> Leaky.
The fc input size is inferred from ``input_shape`` (e.g. 1x28x28 with 16-64 channels -> 1024).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from qsnn.net import SpikingNet, Stage
from qsnn.neurons import make_leaky


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
    beta: float = 0.5,
    threshold: float = 1.0,
    learn_beta: bool = False,
    learn_threshold: bool = False,
    reset: str = "subtract",
    dropout: float = 0.0,
    impl: str = "fast",
    state_quant=None,
) -> SpikingNet:
    def leaky():
        return make_leaky(beta, threshold, spike_grad, learn_beta, learn_threshold, reset, state_quant)

    stages, c_in = [], input_shape[0]
    for ch in channels:
        op = nn.Sequential(nn.Conv2d(c_in, ch, kernel_size, bias=False), nn.AvgPool2d(2))
        stages.append(Stage(op, leaky(), nn.BatchNorm2d(ch) if batchnorm else None))
        c_in = ch
    fc_in = math.prod(conv_out_shape(input_shape, channels, kernel_size))
    head = nn.Sequential(nn.Flatten(), nn.Linear(fc_in, num_classes), nn.Dropout(dropout))
    stages.append(Stage(head, leaky()))
    return SpikingNet(stages, impl=impl)

"""Attach weight quantizers to a model's Linear/Conv layers, and count weight memory."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.nn.utils import parametrize

QUANTIZABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def weight_layers(model: nn.Module) -> list[nn.Module]:
    """Linear/Conv layers in definition order (first = input layer, last = output layer)."""
    return [m for m in model.modules() if isinstance(m, QUANTIZABLE)]


def quantize_weights(
    model: nn.Module,
    quantizer: Callable[[], nn.Module] | None,
    bits: int = 32,
    keep_first_fp: bool = False,
    keep_last_fp: bool = False,
) -> nn.Module:
    """Register ``quantizer()`` as a parametrization of each chosen layer's weight.

    ``bits >= 32`` or ``quantizer is None`` leaves the model at full precision.
    """
    if quantizer is None or bits >= 32:
        return model
    layers = weight_layers(model)
    for i, layer in enumerate(layers):
        if (i == 0 and keep_first_fp) or (i == len(layers) - 1 and keep_last_fp):
            continue
        parametrize.register_parametrization(layer, "weight", quantizer())
    return model


def weight_bits(model: nn.Module, bits: int) -> int:
    """Bits needed to store the weights: quantized layers at ``bits`` (plus one fp32 scale
    per tensor/channel), everything else (biases, fp layers, BN, neuron params) at 32."""
    total = 0
    quantized = set()
    for layer in weight_layers(model):
        if parametrize.is_parametrized(layer, "weight"):
            w = layer.parametrizations.weight.original
            q = layer.parametrizations.weight[0]
            n_scales = w.shape[0] if getattr(q, "per_channel", False) else 1
            total += w.numel() * min(bits, 32) + 32 * n_scales
            quantized.add(id(w))
    for p in model.parameters():
        if id(p) not in quantized:
            total += p.numel() * 32
    return total


def quantized_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """state_dict with parametrized weights replaced by their quantized values."""
    out = {}
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, QUANTIZABLE):
                out[f"{name}.weight" if name else "weight"] = module.weight.detach().clone()
    return out

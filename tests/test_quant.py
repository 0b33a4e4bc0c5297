"""Uniform STE quantizer: levels, scale, STE gradient, and equality with Brevitas at 4 bits."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from qsnn.nn.quant.apply import quantize_weights, weight_bits, weight_layers
from qsnn.nn.quant.uniform import UniformSTEQuantizer


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_levels_are_narrow_symmetric_integers_times_maxabs_scale(bits):
    w = torch.randn(64, 32)
    q = UniformSTEQuantizer(bits)(w)
    qmax = 2 ** (bits - 1) - 1
    scale = w.abs().max() / qmax
    ints = q / scale
    assert torch.allclose(ints, ints.round(), atol=1e-4)
    assert ints.round().abs().max() == qmax
    assert len(q.unique()) <= 2 * qmax + 1
    assert (q - w).abs().max() <= scale / 2 + 1e-6


def test_full_precision_is_identity_and_binary_is_sign_times_mean():
    w = torch.randn(8, 8)
    assert torch.equal(UniformSTEQuantizer(32)(w), w)
    b = UniformSTEQuantizer(1)(w)
    assert torch.allclose(b, torch.where(w >= 0, 1.0, -1.0) * w.abs().mean())


def test_per_channel_scales_each_output_channel():
    w = torch.randn(4, 10) * torch.tensor([[0.01], [0.1], [1.0], [10.0]])
    q = UniformSTEQuantizer(4, per_channel=True)(w)
    for row_w, row_q in zip(w, q):
        assert torch.isclose(row_q.abs().max(), row_w.abs().max())


def test_ste_passes_gradient():
    w = torch.randn(16, 16, requires_grad=True)
    UniformSTEQuantizer(4)(w).pow(2).sum().backward()
    assert w.grad is not None and w.grad.abs().sum() > 0


def test_matches_brevitas_int8_weight_per_tensor_float_at_4_bits():
    brevitas = pytest.importorskip("brevitas")
    from brevitas.nn import QuantLinear
    from brevitas.quant import Int8WeightPerTensorFloat

    torch.manual_seed(0)
    ref = QuantLinear(20, 10, bias=False, weight_quant=Int8WeightPerTensorFloat, weight_bit_width=4)
    w = ref.weight.detach().clone().requires_grad_(True)
    expected = ref.quant_weight().value
    ours = UniformSTEQuantizer(4)(w)
    assert torch.allclose(ours, expected.detach(), atol=1e-7), brevitas.__version__
    # gradients w.r.t. the float weight also agree (scale is differentiable in both)
    g = torch.randn(10, 20)
    (ours * g).sum().backward()
    (expected * g).sum().backward()
    assert torch.allclose(w.grad, ref.weight.grad, atol=1e-6)


def test_quantize_weights_keeps_first_and_last_fp_on_request():
    model = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 2))
    quantize_weights(model, lambda: UniformSTEQuantizer(4), bits=4, keep_first_fp=True, keep_last_fp=True)
    flags = [parametrize.is_parametrized(m, "weight") for m in weight_layers(model)]
    assert flags == [False, True, False]


def test_weight_bits_counts_quantized_layers_at_bitwidth():
    model = nn.Sequential(nn.Linear(10, 10, bias=False))
    assert weight_bits(model, 32) == 100 * 32
    quantize_weights(model, lambda: UniformSTEQuantizer(4), bits=4)
    assert weight_bits(model, 4) == 100 * 4 + 32  # + one fp32 scale

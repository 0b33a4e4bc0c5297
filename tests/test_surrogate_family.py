"""Surrogate-gradient family (papers/002): gradients vs closed forms, peak, area, the q=2 and
snnTorch identities, the stability init, the sparsity loss, and a tiny training run."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import snntorch.surrogate
import torch

from qsnn.run.runner import train

from qsnn.run.build import build_datamodule, build_net, calibration_batch
from qsnn.run.sparsity import SparsityLoss
from qsnn.nn.surrogate import SHAPES, surrogate
from conftest import TINY

# The reference table (reference.md section 2), written out again here independently of the code.
FORMULAS = {
    "rectangular": lambda v, g, b, q: g * ((2 * b * v).abs() < 1).double(),
    "triangular": lambda v, g, b, q: g * torch.clamp(1 - (b * v).abs(), min=0),
    "exponential": lambda v, g, b, q: g * torch.exp(-2 * b * v.abs()),
    "gaussian": lambda v, g, b, q: g * torch.exp(-math.pi * (b * v) ** 2),
    "sigmoid_derivative": lambda v, g, b, q: 4 * g * torch.sigmoid(4 * b * v) * (1 - torch.sigmoid(4 * b * v)),
    "fast_sigmoid": lambda v, g, b, q: g / (1 + 2 * b * v.abs()) ** 2,
    "q_pseudo_spike": lambda v, g, b, q: g / (1 + 2 * b * v.abs() / (q - 1)) ** q,
}
GRID = torch.linspace(-3, 3, 601, dtype=torch.float64)


def _grad(sg, v):
    v = v.clone().requires_grad_(True)
    out = sg(v)
    out.sum().backward()
    return out.detach(), v.grad


def test_every_shape_is_tested():
    assert set(FORMULAS) == set(SHAPES)


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("gamma,beta,q", [(1.0, 1.0, 2.0), (0.3, 4.0, 1.5), (2.0, 0.5, 5.0)])
def test_gradient_matches_formula_and_forward_is_heaviside(shape, gamma, beta, q):
    out, grad = _grad(surrogate(shape, gamma, beta, q), GRID)
    assert torch.equal(out, (GRID > 0).double())
    assert torch.allclose(grad, FORMULAS[shape](GRID, gamma, beta, q), atol=1e-12)


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_peak_is_gamma_and_area_is_gamma_over_beta(shape):
    gamma, beta = 0.7, 3.0
    v = torch.linspace(-200, 200, 2_000_001, dtype=torch.float64)
    _, grad = _grad(surrogate(shape, gamma, beta, q=3.0), v)
    assert grad.max().item() == pytest.approx(gamma, rel=1e-6)
    area = torch.trapezoid(grad, v).item()
    # the q-PseudoSpike / fast-sigmoid tails decay like 1/v^q: the cut at |v| = 200 loses < 1e-3
    assert area == pytest.approx(gamma / beta, rel=2e-3)


def test_q2_equals_fast_sigmoid():
    _, g_q = _grad(surrogate("q_pseudo_spike", 0.8, 2.5, q=2.0), GRID)
    _, g_fs = _grad(surrogate("fast_sigmoid", 0.8, 2.5), GRID)
    assert torch.allclose(g_q, g_fs, atol=1e-14)


@pytest.mark.parametrize("k", [5.0, 13.84, 25.0])
def test_family_fast_sigmoid_equals_snntorch(k):
    v = GRID.float()
    out_ours, g_ours = _grad(surrogate("fast_sigmoid", gamma=1.0, beta=k / 2), v)
    out_snn, g_snn = _grad(snntorch.surrogate.fast_sigmoid(slope=k), v)
    assert torch.equal(out_ours, out_snn)
    assert torch.allclose(g_ours, g_snn, atol=1e-6)


@pytest.mark.parametrize("k", [5.0, 25.0])
def test_sigmoid_equals_snntorch_where_finite_and_stays_finite_where_it_overflows(k):
    """conf/surrogate/sigmoid.yaml: snnTorch's sigmoid derivative, without its NaN far below threshold."""
    from qsnn.nn.surrogate import snntorch_sigmoid

    v = torch.linspace(-8, 8, 801)
    out_ours, g_ours = _grad(snntorch_sigmoid(k), v)
    out_snn, g_snn = _grad(snntorch.surrogate.sigmoid(slope=k), v)
    assert torch.equal(out_ours, out_snn.to(out_ours.dtype))
    finite = torch.isfinite(g_snn)
    assert torch.allclose(g_ours[finite], g_snn[finite], rtol=1e-5, atol=1e-6)
    assert torch.isfinite(g_ours).all()
    assert (k < 10) or not finite.all()  # at slope 25 snnTorch's own formula gives NaN below -3.5


def test_stability_init_hits_target_rate_and_unit_jacobian(make_cfg):
    cfg = make_cfg("surrogate=sg_fast_sigmoid", "surrogate.stability=true", "quant.bits=32")
    dm = build_datamodule(cfg)
    net = build_net(cfg, dm)
    chosen = net.stability_init
    assert len(chosen) == len(net.stages)
    for c, st in zip(chosen, net.stages):
        assert c["rate"] == pytest.approx(0.5, abs=0.02)
        assert c["jacobian_sq"] == pytest.approx(1.0, rel=1e-3)
        assert st.lif.spike_grad.gamma == c["gamma"] and st.lif.spike_grad.beta == c["beta"]
    # a fresh batch, the whole net: every layer's initial rate near 0.5 (not 0.0x as by default)
    with torch.no_grad():
        net(calibration_batch(dm))
    assert all(abs(float(r) - 0.5) < 0.1 for r in net.rates), net.rates


def test_sparsity_ramp_and_value():
    sp = SparsityLoss(weight=2.0, f_target=0.01, start=0.2, end=0.6)
    assert [sp.scale(p) for p in (0.0, 0.19, 0.2, 0.4, 0.6, 1.0)] == pytest.approx([0, 0, 0, 0.5, 1, 1])
    rates = [torch.tensor(0.3, requires_grad=True), torch.tensor(0.11, requires_grad=True)]
    loss = sp(rates, progress=0.4)
    assert loss.item() == pytest.approx(2.0 * 0.5 * (0.205 - 0.01) ** 2)
    loss.backward()
    assert rates[0].grad.item() > 0  # pushes rates down towards f_target


def test_family_surrogate_with_stability_and_sparsity_trains(make_cfg):
    cfg = make_cfg(*TINY, "logger=csv", "surrogate=sg_q_pseudo_spike", "surrogate.stability=true",
                   "loss.sparsity.weight=1", "loss.sparsity.start=0", "loss.sparsity.end=0")
    summary = train(cfg)
    assert summary["status"] == "ok"
    assert len(summary["surrogate_stability"]) == 2
    saved = json.loads((Path(cfg.paths.output_dir) / "summary.json").read_text())
    assert saved["surrogate_stability"][0]["gamma"] == pytest.approx(summary["surrogate_stability"][0]["gamma"])
    assert "train/sparsity_loss" in summary["epochs"][-1]
    assert summary["epochs"][-1]["train/sparsity_loss"] > 0

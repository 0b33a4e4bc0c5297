"""Hybrid sigma-delta neuron (papers/004) and the activation STEs (Yin et al.)."""
from __future__ import annotations

import pytest
import torch

from qsnn.run.callbacks import EpochSchedules
from qsnn.nn.quant.ste import STES, ste
from qsnn.run.runner import train
from qsnn.run.build import build_datamodule, build_module, calibration_batch
from qsnn.nn.sigma_delta import SigmaDelta
from conftest import TINY

R = torch.linspace(0, 1, 101)  # constant activations in [0, 1]
K = 50  # time steps


def _run(dt: float, r=R, activation="clipped_relu"):
    sd = SigmaDelta(activation=activation, dt_start=dt)
    return sd.multistep(r.expand(K, *r.shape).clone())


@pytest.mark.parametrize("dt", [0.5, 1.0, 4.0, 32.0, 256.0])
def test_output_tracks_r_within_the_sigma_delta_bounds(dt):
    out, v = _run(dt)
    # the error is carried in V in [0, 1): per step |out - r| < 1/dt, over K steps |mean - r| < 1/(K dt)
    assert ((out - R).abs() < 1 / dt + 1e-5).all()
    assert ((out.mean(0) - R).abs() <= 1 / (K * dt) + 1e-5).all()
    assert ((v >= 0) & (v < 1)).all()


def test_mean_rate_error_shrinks_as_dt_grows_and_spikes_are_bounded():
    errs = []
    for dt in (0.5, 2.0, 8.0, 64.0):
        out, _ = _run(dt)
        n = out * dt  # spike counts per step
        assert torch.equal(n, n.round()) and (n >= 0).all()
        assert (n <= torch.ceil(R * dt)).all()  # at most ceil(r*dt) spikes per step
        assert (n.sum(0) <= R * dt * K + 1).all()  # total spikes bounded by the integral of r
        errs.append((out.mean(0) - R).abs().max().item())
    assert errs == sorted(errs, reverse=True) and errs[-1] < 1e-3, errs


def test_dt_one_clipped_relu_gives_binary_spikes():
    out, _ = _run(1.0, r=torch.linspace(-1, 2, 61))
    assert set(out.unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("kind", STES)
def test_each_ste_backward_matches_its_definition(kind):
    x = torch.linspace(-2, 2, 401, requires_grad=True)
    q = torch.floor(x.detach().clamp(0, 1) * 4) / 4
    y = ste(x, q, kind)
    assert torch.equal(y, q)
    g = torch.randn(401)
    y.backward(g)
    expected = {"identity": torch.ones_like(x), "relu": (x > 0).float(),
                "clipped_relu": ((x > 0) & (x < 1)).float()}[kind]
    assert torch.equal(x.grad, g * expected)


def test_neuron_gradient_is_the_configured_ste():
    cur = torch.linspace(-1, 2, 31).expand(5, 31).clone().requires_grad_(True)
    out, _ = SigmaDelta(ste="relu", dt_start=8.0).multistep(cur)
    out.sum().backward()
    assert torch.equal(cur.grad, (cur > 0).float().expand(5, 31) * 1.0)


def test_dt_anneals_geometrically_from_non_spiking_to_spiking():
    sd = SigmaDelta(dt_start=64.0, dt_end=1.0, anneal_end=1.0)

    class _T:
        max_epochs, current_epoch = 7, 0

    seen = []
    for e in range(7):
        _T.current_epoch = e
        EpochSchedules().on_train_epoch_start(_T, sd)
        seen.append(float(sd.dt))
    assert seen == pytest.approx([64, 32, 16, 8, 4, 2, 1])


@pytest.mark.parametrize("impl", ["fast", "snntorch"])
def test_sigma_delta_fcsnn_paths_agree(make_cfg, impl):
    cfg = make_cfg("model.neuron=sigma_delta", "model.sigma_delta.dt_start=4", "quant.bits=32")
    dm = build_datamodule(cfg)
    torch.manual_seed(0)
    m_fast = build_module(cfg, dm)
    cfg.model.impl = impl
    torch.manual_seed(0)
    m_other = build_module(cfg, dm)
    x = calibration_batch(dm)
    a, b = m_fast.net(x)[0], m_other.net(x)[0]
    assert torch.allclose(a, b) and a.sum() > 0


def test_sigma_delta_trains_end_to_end(make_cfg):
    """Two full epochs on digits (about a second) learn: 88% measured, chance is 10%."""
    summary = train(make_cfg("trainer.max_epochs=2", "print_config=false", "callbacks.progress_bar=null",
                             "logger=csv", "torch_threads=1", "model.neuron=sigma_delta"))
    assert summary["status"] == "ok" and summary["metrics"]["test/acc"] > 0.5


def test_bad_neuron_is_one_line_error(make_cfg):
    from qsnn.errors import ConfigError
    from qsnn.run.validate import validate

    with pytest.raises(ConfigError, match=r"model.neuron='lif' is not allowed: use leaky or sigma_delta"):
        validate(make_cfg("model.neuron=lif"))
    with pytest.raises(ConfigError, match=r"model.sigma_delta.ste='tanh'"):
        validate(make_cfg("model.neuron=sigma_delta", "model.sigma_delta.ste=tanh"))

"""Sigmoid-sum weight quantizer (papers/003): soft -> hard as T grows, exact level counts at
eval, gradients in training, temperature schedule, and a binary-weight run that learns."""
from __future__ import annotations

import pytest
import torch
from torch.nn.utils import parametrize

from qsnn.run.callbacks import EpochSchedules
from qsnn.nn.quant.sigmoid_sum import SigmoidSumQuantizer, level_values
from qsnn.run.runner import train
from conftest import TINY


def _weights(n=20_000, seed=0):
    return torch.rand(n, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
def test_soft_converges_to_hard_staircase_as_temperature_grows(bits):
    q, w = SigmoidSumQuantizer(bits), _weights()
    q(w)  # first call sets alpha/beta from the weight
    hard = q.eval()(w)
    q.train()
    # points within 0.05 level-units of a step are excluded: at a step the soft value is midway
    z = (q.beta * w).detach().unsqueeze(-1) - q.offsets
    far = z.abs().min(-1).values > 0.05
    errors = []
    for T in (1.0, 10.0, 100.0, 1000.0):
        q.temperature.fill_(T)
        errors.append((q(w) - hard)[far].abs().max().item())
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 1e-6


@pytest.mark.parametrize("bits,narrow,expected", [(1, True, 2), (2, True, 3), (2, False, 4), (3, True, 7),
                                                  (4, True, 15), (4, False, 16), (8, True, 255), (8, False, 256)])
def test_eval_takes_exactly_the_level_count(bits, narrow, expected):
    q = SigmoidSumQuantizer(bits, narrow=narrow)
    w = _weights()
    q(w)
    if not narrow:  # the extra negative level sits beyond -max|w| at max-abs scaling: reach it
        w = torch.cat([w, torch.tensor([-2.0])])
    values = q.eval()(w).unique()
    assert q.levels() == expected == len(level_values(bits, narrow)) == values.numel()
    steps = values.diff()  # evenly spaced levels, alpha apart
    assert torch.allclose(steps, steps[0].expand_as(steps), rtol=1e-4)


def test_gradients_reach_weights_alpha_and_beta_in_training():
    layer = torch.nn.Linear(16, 8)
    parametrize.register_parametrization(layer, "weight", SigmoidSumQuantizer(1))
    layer(torch.randn(4, 16)).pow(2).sum().backward()
    q = layer.parametrizations.weight[0]
    assert layer.parametrizations.weight.original.grad.abs().sum() > 0
    assert q.alpha.grad.abs() > 0 and q.beta.grad.abs() > 0


def test_temperature_schedule_is_linear_and_capped():
    net = torch.nn.Sequential(torch.nn.Linear(2, 2))
    parametrize.register_parametrization(net[0], "weight", SigmoidSumQuantizer(2, t0=5.0, t_max=12.0))
    q = net[0].parametrizations.weight[0]

    class _T:  # the two attributes EpochSchedules reads from a Trainer
        max_epochs, current_epoch = 10, 0

    trainer, seen = _T(), []
    for epoch in range(4):
        trainer.current_epoch = epoch
        EpochSchedules().on_train_epoch_start(trainer, net)
        seen.append(float(q.temperature))
    assert seen == [5.0, 10.0, 12.0, 12.0]


def test_binary_sigmoid_sum_learns_digits_and_reports_saving(make_cfg):
    cfg = make_cfg("quant=sigmoid_sum", "quant.bits=1", "trainer.max_epochs=3", "logger=csv",
                   "print_config=false", "callbacks.progress_bar=null")
    summary = train(cfg)
    assert summary["metrics"]["test/acc"] > 0.5  # chance is 0.1
    assert summary["weight_saving_vs_fp32"] > 10  # 1-bit weights: close to 32x less than fp32
    assert summary["epochs"][-1]["epoch"] == 2


def test_quant_method_names_the_method(make_cfg):
    assert make_cfg("quant=sigmoid_sum").quant.method == "sigmoid_sum"
    assert make_cfg().quant.method == "uniform_ste"

"""Each schedule's LR sequence equals torch's scheduler it mirrors; all step per batch."""
from __future__ import annotations

import math

import pytest
import torch
from hydra.utils import instantiate
from torch.optim import lr_scheduler as S

from qsnn.run import schedules


def lrs(sched_or_factory, steps, lr=1.0, **kw):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    sched = sched_or_factory(opt, **kw) if callable(sched_or_factory) else sched_or_factory
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_cosine_periodic_is_cosine_annealing_lr_and_rises_again():
    ours = lrs(schedules.cosine_periodic, 40, T_max=10)
    ref = lrs(lambda o: S.CosineAnnealingLR(o, T_max=10), 40)
    assert ours == pytest.approx(ref)
    assert ours[10] == pytest.approx(0.0, abs=1e-12) and ours[20] == pytest.approx(1.0)
    assert ours[11] > ours[10]  # rises smoothly, no jump back to the max
    assert ours[15] == pytest.approx(0.5)


def test_cosine_restart_is_sgdr_and_jumps_back():
    ours = lrs(schedules.cosine_restart, 40, T_0=10, T_mult=2)
    ref = lrs(lambda o: S.CosineAnnealingWarmRestarts(o, T_0=10, T_mult=2), 40)
    assert ours == pytest.approx(ref)
    assert ours[9] < 0.1 and ours[10] == pytest.approx(1.0) and ours[30] == pytest.approx(1.0)


def test_periods_in_epochs_use_steps_per_epoch():
    assert lrs(schedules.cosine_periodic, 30, T_max_epochs=2, steps_per_epoch=5) == pytest.approx(
        lrs(schedules.cosine_periodic, 30, T_max=10))


def test_cosine_anneals_once_over_the_run():
    ours = lrs(schedules.cosine, 20, total_steps=20)
    assert ours[0] == 1.0 and all(a >= b for a, b in zip(ours, ours[1:]))
    assert ours == pytest.approx(lrs(lambda o: S.CosineAnnealingLR(o, T_max=20), 20))


def test_constant_step_onecycle():
    assert set(lrs(schedules.constant, 10)) == {1.0}
    st = lrs(schedules.step, 10, step_epochs=1, steps_per_epoch=4, gamma=0.5)
    assert st == pytest.approx([1.0] * 4 + [0.5] * 4 + [0.25] * 2)
    oc = lrs(schedules.onecycle, 20, total_steps=20)
    assert oc == pytest.approx(lrs(lambda o: S.OneCycleLR(o, max_lr=[1.0], total_steps=20), 20))


def test_linear_warmup_then_schedule():
    ours = lrs(schedules.cosine_periodic, 15, T_max=10, warmup_steps=5)
    assert ours[:5] == pytest.approx([(i + 1) / 6 for i in range(5)])
    assert ours[5] == pytest.approx(1.0) and ours[10] < ours[5]


@pytest.mark.parametrize("name", ["constant", "cosine", "cosine_periodic", "cosine_restart", "step", "onecycle"])
def test_sched_configs_build(make_cfg, name):
    factory = instantiate(make_cfg(f"sched={name}").sched)
    seq = lrs(factory, 30, steps_per_epoch=10, total_steps=30)
    assert all(math.isfinite(v) and v >= 0 for v in seq)


def test_periods_as_fraction_of_the_run_follow_total_steps():
    """sched.T_max_frac / T_0_frac: the same schedule shape at any run length."""
    import torch

    from qsnn.run import schedules

    for total in (40, 400):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        s = schedules.cosine_periodic(opt, steps_per_epoch=7, total_steps=total, T_max_frac=0.25, T_max_epochs=5)
        assert s.T_max == total // 4  # the fraction wins over T_max_epochs
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        assert schedules.cosine_restart(opt, total_steps=total, T_0_frac=0.5).T_0 == total // 2


@pytest.mark.parametrize("key", ["sched.T_max_frac", "sched.T_0_frac"])
@pytest.mark.parametrize("value", [0, 1.5, -0.2])
def test_fraction_outside_0_1_is_one_line_error(key, value):
    from omegaconf import OmegaConf

    from qsnn.errors import ConfigError
    from qsnn.run.validate import validate

    cfg = OmegaConf.create({})
    OmegaConf.update(cfg, key, value)
    with pytest.raises(ConfigError, match=rf"{key}={value!r} is not allowed: .*\(0, 1\]"):
        validate(cfg)  # the rule table of qsnn.run.validate
    OmegaConf.update(cfg, key, 1.0)
    validate(cfg)  # 1.0 (one period = the whole run) is fine

"""Every option of every config group composes with the real conf/ and instantiates."""
from __future__ import annotations

import pytest
from hydra.utils import instantiate

from conftest import CONF

GROUPS = ["data", "model", "quant", "surrogate", "sched", "optim", "loss", "trainer", "logger", "callbacks",
          "launcher", "experiment", "debug"]


def options(group):
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_option_composes(make_cfg, group, option):
    cfg = make_cfg(f"{group}={option}")
    # resolving everything catches broken interpolations
    from omegaconf import OmegaConf
    OmegaConf.to_container(cfg, resolve=True)
    assert cfg.data.num_steps >= 1 and cfg.quant.bits in (*range(1, 9), 32)


def test_each_group_has_options():
    for g in GROUPS:
        assert options(g), g


@pytest.mark.parametrize("option", options("surrogate"))
def test_surrogates_instantiate_to_spike_functions(make_cfg, option):
    import torch
    fn = instantiate(make_cfg(f"surrogate={option}").surrogate)
    u = torch.linspace(-1, 1, 11, requires_grad=True)
    s = fn(u)
    s.sum().backward()
    assert set(s.detach().unique().tolist()) <= {0.0, 1.0}
    assert torch.isfinite(u.grad).all() and u.grad.abs().sum() > 0


def test_experiment_mnist_has_paper_hyperparameters(make_cfg):
    cfg = make_cfg("experiment=qsnn_mnist")
    assert (cfg.model.beta, cfg.model.threshold, cfg.surrogate.slope) == (0.994, 2.915, 13.84)
    assert cfg.optim.lr == 5.4e-3 and cfg.sched.T_max == 4690 and cfg.data.num_steps == 100
    assert cfg.quant.bits == 4 and list(cfg.model.channels) == [16, 64]


def test_experiment_fmnist_overrides_mnist(make_cfg):
    cfg = make_cfg("experiment=qsnn_fmnist")
    assert cfg.data.name == "FashionMNIST" and cfg.optim.lr == 2.908e-3 and cfg.model.beta == 0.974


def test_wandb_logger_config(make_cfg):
    cfg = make_cfg("quant.bits=32", "sched=cosine_restart")
    w = cfg.logger.wandb
    assert list(w.tags) == ["digits", "bits32", "cosine_restart", "fast_sigmoid"]
    assert w.mode in ("offline", "online", "disabled", "dryrun")

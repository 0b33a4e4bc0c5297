"""Every option of every config group composes with the real conf/, instantiates, and runs: one tiny
training run per option (data options on generated files). debug/, logger/ and callbacks/ run in
tests/test_options.py; trainer=ddp in tests/test_ddp.py; the launchers and hparams_search in
tests/test_sweeps.py and tests/test_stacked.py (launcher=slurm composes only: no SLURM here)."""
from __future__ import annotations

import pytest
from hydra.utils import instantiate

from conftest import CONF
from test_events import EXPECT

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


RUN = ["trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
       "trainer.limit_test_batches=1", "print_config=false", "callbacks.progress_bar=null", "logger=none",
       "torch_threads=1", "cost.max_batches=1"]
RUN_GROUPS = ["data", "model", "quant", "surrogate", "sched", "optim", "loss", "trainer", "experiment"]
ELSEWHERE = {("trainer", "ddp"): "tests/test_ddp.py"}


def option_overrides(group, option, idx_root, event_root, tmp_path) -> list[str]:
    """What one option needs to run in a second: its data files, a net small enough for the data."""
    if (group, option) == ("model", "csnn"):  # digits are 8x8: one conv3 block
        return ["model.channels=[4]", "model.kernel_size=3"]
    if option in ("mnist", "fmnist", "qsnn_mnist", "qsnn_fmnist"):
        val = ["data.val_size=16"] if group == "data" else []  # the recipes use all training images
        return [f"data.root={idx_root}", "data.num_steps=2", "data.batch_size=16", *val]
    name = "dvsgesture" if option == "qsnn_dvsgesture" else option
    if name in EXPECT:
        model = [] if group == "experiment" else EXPECT[name][2]
        return [f"data.root={event_root}", f"data.cache_dir={tmp_path / 'cache'}", "data.num_steps=4",
                "data.eval_steps=4", "data.batch_size=8", *model]
    return []


@pytest.mark.parametrize("group,option", [(g, o) for g in RUN_GROUPS for o in options(g)
                                          if (g, o) not in ELSEWHERE])
def test_every_option_runs(group, option, make_cfg, idx_root, event_root, tmp_path):
    import math

    import torch

    from qsnn.run.runner import train

    if (group, option) == ("trainer", "gpu") and not torch.cuda.is_available():
        pytest.skip("trainer=gpu needs a CUDA device")
    extra = option_overrides(group, option, idx_root, event_root, tmp_path)
    summary = train(make_cfg(f"{group}={option}", *RUN, *extra))
    assert summary["status"] == "ok", summary.get("error")
    assert math.isfinite(summary["metrics"]["test/loss"]) and 0 <= summary["metrics"]["test/acc"] <= 1

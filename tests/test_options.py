"""Every option of the debug/, logger/ and callbacks/ groups that --help lists runs (in-process, tiny
budgets), and the library noise filters drop only what they name."""
from __future__ import annotations

import logging
import sys
import warnings

import pytest
from omegaconf import open_dict

from conftest import CONF, compose_cfg
from qsnn.run.runner import train
from qsnn.errors import ConfigError
from qsnn.run.validate import validate

FAST = ["trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1", "print_config=false", "torch_threads=1"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def run_cfg(tmp_path, *overrides):
    out = tmp_path / "run"
    cfg = compose_cfg(overrides, output_dir=out)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
        del cfg.hydra
    return cfg, out


def test_the_groups_tested_here_are_complete():
    assert options("debug") == ["fast_dev_run", "overfit", "profiler"]
    assert options("logger") == ["csv", "none", "tensorboard", "wandb"]
    assert options("callbacks") == ["default", "none"]


@pytest.mark.parametrize("option", options("debug"))
def test_debug_option_runs(tmp_path, option):
    cfg, out = run_cfg(tmp_path, f"debug={option}", *FAST, "logger=csv", "callbacks.progress_bar=null")
    if option == "fast_dev_run":  # its own budget (one batch each) and no logger
        cfg, out = run_cfg(tmp_path, "debug=fast_dev_run", "print_config=false", "torch_threads=1",
                           "callbacks.progress_bar=null")
        assert not cfg.logger
    summary = train(cfg)
    assert summary["status"] == "ok" and 0.0 <= summary["metrics"]["test/acc"] <= 1.0
    if option == "overfit":
        assert cfg.trainer.overfit_batches == 1
    if option == "profiler":
        assert cfg.trainer.profiler == "simple"


@pytest.mark.parametrize("option", options("logger"))
def test_logger_option_runs(tmp_path, option):
    cfg, out = run_cfg(tmp_path, f"logger={option}", *FAST, "callbacks.progress_bar=null")
    summary = train(cfg)
    assert summary["status"] == "ok" and 0.0 <= summary["metrics"]["test/acc"] <= 1.0
    written = {
        "none": [],
        "csv": list(out.glob("csv/*/metrics.csv")),
        "tensorboard": list(out.glob("tensorboard/**/events.out.tfevents.*")),
        "wandb": list(out.glob("wandb/offline-run-*/run-*.wandb")),
    }[option]
    assert bool(written) == (option != "none")
    assert (summary.get("wandb") is not None) == (option == "wandb")


@pytest.mark.parametrize("option", options("callbacks"))
def test_callbacks_option_runs(tmp_path, option):
    cfg, out = run_cfg(tmp_path, f"callbacks={option}", *FAST, "logger=csv")
    summary = train(cfg)
    assert summary["status"] == "ok" and 0.0 <= summary["metrics"]["test/acc"] <= 1.0
    assert (out / "checkpoints" / "last.ckpt").is_file() == (option == "default")


def test_tensorboard_missing_is_one_error_naming_the_extra(tmp_path, monkeypatch):
    """find_spec returns None for a module set to None in sys.modules: both packages Lightning's
    TensorBoardLogger can use look uninstalled, so validation refuses before anything is built."""
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    cfg, out = run_cfg(tmp_path, "logger=tensorboard", *FAST)
    with pytest.raises(ConfigError) as e:
        validate(cfg)
    msg = str(e.value)
    assert "\n" not in msg and "logger=tensorboard" in msg and "pip install 'qsnn[tensorboard]'" in msg
    assert not out.exists()


def test_single_run_without_overrides_is_named_by_its_choices():
    cfg = compose_cfg([], output_dir=CONF.parent / "unused")
    assert cfg.logger.wandb.name == "digits-fcsnn-uniform-fast_sigmoid-cosine"


def test_noise_filters_drop_only_the_named_lines():
    from lightning.pytorch.utilities.rank_zero import rank_zero_info

    from qsnn.run.quiet import silence_library_noise

    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    from lightning.pytorch.utilities import rank_zero_only

    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    handler = Keep()
    rank_zero.addHandler(handler)
    # earlier in-process runs in the suite may leave this logger's level or the rank changed
    level, disabled, rank = rank_zero.level, rank_zero.disabled, getattr(rank_zero_only, "rank", 0)
    rank_zero.setLevel(logging.INFO)
    rank_zero.disabled, rank_zero_only.rank = False, 0
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            silence_library_noise()
            warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use ...", FutureWarning)
            warnings.warn("`foo` is deprecated, use `bar`", FutureWarning)  # a genuine one stays
            warnings.warn("a genuine user warning", UserWarning)
            for msg in ("GPU available: False, used: False", "TPU available: False, using: 0 TPU cores",
                        "Loading `train_dataloader` to estimate number of stepping batches.",
                        "`Trainer.fit` stopped: `max_epochs=1` reached."):
                rank_zero_info(msg)
    finally:
        rank_zero.removeHandler(handler)
        rank_zero.setLevel(level)
        rank_zero.disabled, rank_zero_only.rank = disabled, rank
    assert [str(w.message) for w in caught] == ["`foo` is deprecated, use `bar`", "a genuine user warning"]
    assert records == ["`Trainer.fit` stopped: `max_epochs=1` reached."]

"""Build everything from a composed config and run it. ``src/train.py`` and ``src/eval.py``
are thin Hydra wrappers around ``train()`` and ``evaluate()``.

Every job writes ``summary.json`` in its output dir (atomically: temp file + rename) with its
status, overrides, choices, metrics and history; the sweep report reads those files.
"""
from __future__ import annotations

import json
import os
import time
import traceback
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from qsnn.callbacks import History
from qsnn.metrics import log_test_cost
from qsnn.module import QSNNModule
from qsnn.quant.apply import quantize_weights
from qsnn.validate import validate


def atomic_write_text(path: str | Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def hydra_info() -> dict[str, Any]:
    """Overrides and group choices of the running Hydra job (empty outside Hydra)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        hc = HydraConfig.get()
    except (ImportError, ValueError):
        return {"overrides": [], "choices": {}, "job_num": None}
    choices = {k: v for k, v in hc.runtime.choices.items() if not k.startswith("hydra/") and v is not None}
    return {"overrides": list(hc.overrides.task), "choices": choices, "job_num": hc.job.get("num")}


def build_datamodule(cfg: DictConfig) -> L.LightningDataModule:
    from hydra.errors import InstantiationException

    try:
        return instantiate(cfg.data)
    except InstantiationException as e:  # Hydra wraps errors from __init__: keep the one-line user error
        if isinstance(e.__cause__, ValueError):  # ConfigError, DataFileError
            raise e.__cause__ from None
        raise


def build_net(cfg: DictConfig, dm) -> torch.nn.Module:
    state_quant = instantiate(cfg.quant.state) if cfg.quant.get("state_bits") else None
    net = instantiate(cfg.model, input_shape=list(dm.input_shape), num_classes=dm.num_classes,
                      spike_grad=instantiate(cfg.surrogate), state_quant=state_quant)
    q = cfg.quant
    return quantize_weights(net, instantiate(q.weight) if q.get("weight") else None, bits=q.bits,
                            keep_first_fp=q.keep_first_fp, keep_last_fp=q.keep_last_fp)


def build_module(cfg: DictConfig, dm) -> QSNNModule:
    return QSNNModule(net=build_net(cfg, dm), loss_fn=instantiate(cfg.loss), optimizer=instantiate(cfg.optim),
                      scheduler=instantiate(cfg.sched), num_classes=dm.num_classes, bits=cfg.quant.bits,
                      compile=cfg.get("compile", False))


def build_loggers(cfg: DictConfig) -> list:
    return [instantiate(c) for c in (cfg.get("logger") or {}).values() if c and "_target_" in c]


def build_callbacks(cfg: DictConfig) -> list:
    return [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c and "_target_" in c]


def print_config(cfg: DictConfig) -> None:
    """Print the resolved config as a rich tree and save it next to the run."""
    import rich
    import rich.syntax
    import rich.tree

    tree = rich.tree.Tree("CONFIG", guide_style="dim")
    for key, node in cfg.items():
        branch = tree.add(str(key))
        text = OmegaConf.to_yaml(node, resolve=True) if isinstance(node, DictConfig) else str(node)
        branch.add(rich.syntax.Syntax(text, "yaml"))
    rich.print(tree)


def _metrics(trainer: L.Trainer | None) -> dict[str, float]:
    if trainer is None:
        return {}
    out = {}
    for k, v in trainer.callback_metrics.items():
        try:
            out[k] = float(v)
        except (TypeError, ValueError):
            pass
    return out


def _finish_loggers(loggers: list) -> None:
    for lg in loggers:
        try:
            lg.finalize("success")
        except Exception:  # a logger failing to close must not hide the run's result
            pass
    try:
        import wandb

        if wandb.run is not None:
            wandb.finish()
    except Exception:
        pass


def train(cfg: DictConfig) -> dict[str, Any]:
    """Validate, build, fit, test. Returns the summary dict (also written to summary.json)."""
    t_start = time.perf_counter()
    validate(cfg)
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"status": "running", **hydra_info(), "seed": cfg.get("seed"),
                               "bits": cfg.quant.bits, "output_dir": str(out_dir)}
    trainer, loggers, history = None, [], History()
    try:
        if cfg.get("torch_threads"):  # parallel sweep jobs: 1 thread each beats N jobs x N threads
            torch.set_num_threads(int(cfg.torch_threads))
        if cfg.get("seed") is not None:
            L.seed_everything(cfg.seed, workers=True, verbose=False)
        resolved = OmegaConf.to_container(cfg, resolve=True)
        if is_rank_zero():
            atomic_write_text(out_dir / "config_resolved.yaml", OmegaConf.to_yaml(OmegaConf.create(resolved)))
        dm = build_datamodule(cfg)
        dm.prepare_data()
        module = build_module(cfg, dm)
        loggers = build_loggers(cfg)
        for lg in loggers:
            lg.log_hyperparams(resolved)
        trainer = instantiate(cfg.trainer, callbacks=build_callbacks(cfg) + [history], logger=loggers or False)
        summary["weight_bits"] = module.weight_bits
        t_fit = time.perf_counter()
        summary["startup_s"] = t_fit - t_start
        if cfg.get("train", True):
            trainer.fit(module, datamodule=dm, ckpt_path=cfg.get("ckpt_path"))
        summary["fit_s"] = time.perf_counter() - t_fit
        metrics = _metrics(trainer)
        if cfg.get("test", True):
            ckpt = "best" if _has_best_ckpt(trainer) else None
            trainer.test(module, datamodule=dm, ckpt_path=ckpt, verbose=False)
            metrics.update(_metrics(trainer))
            metrics.update(log_test_cost(trainer, module, dm, loggers))
        summary.update(status="ok", metrics=metrics)
    except Exception as e:
        summary.update(status="failed", error=f"{type(e).__name__}: {e}".splitlines()[0],
                       traceback=traceback.format_exc(), metrics=_metrics(trainer))
        raise
    finally:
        summary["epochs"] = history.epochs
        summary["lr"] = history.lr
        summary["wall_s"] = time.perf_counter() - t_start
        _finish_loggers(loggers)
        if is_rank_zero():  # under DDP every rank runs train(); one summary per job
            atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=1, default=str))
    return summary


def is_rank_zero() -> bool:
    """False in the extra processes of a multi-device run (Lightning sets their rank from the
    env: LOCAL_RANK/RANK/SLURM_PROCID, then from the strategy)."""
    from lightning.pytorch.utilities import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def _has_best_ckpt(trainer: L.Trainer) -> bool:
    cb = trainer.checkpoint_callback
    return bool(cb is not None and getattr(cb, "best_model_path", ""))


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Test a checkpoint (``ckpt_path``) with the model described by the config."""
    validate(cfg)
    if not cfg.get("ckpt_path"):
        raise FileNotFoundError("ckpt_path is required: src/eval.py ckpt_path=/path/to/checkpoint.ckpt")
    if not Path(cfg.ckpt_path).is_file():
        raise FileNotFoundError(f"ckpt_path={cfg.ckpt_path!r}: no such checkpoint file")
    dm = build_datamodule(cfg)
    dm.prepare_data()
    module = build_module(cfg, dm)
    trainer = instantiate(cfg.trainer, logger=False, callbacks=[])
    trainer.test(module, datamodule=dm, ckpt_path=cfg.ckpt_path, verbose=True)
    metrics = {**_metrics(trainer), **log_test_cost(trainer, module, dm, [])}
    if cfg.get("export"):
        from qsnn.export import export

        for path in export(module.net, cfg.export, Path(cfg.paths.output_dir), list(dm.input_shape)):
            print(f"exported: {path}")
    return metrics

"""Build a job's parts from its composed config, each with ``hydra.utils.instantiate``: the data
module, the net (quantized, optionally stability-calibrated), the LightningModule, the loggers,
the callbacks and the trainer. ``qsnn.run.runner`` calls these in order; the stacked launcher
builds each seed with the same functions, so a seed starts from the weights its single run has.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks.progress import ProgressBar
from omegaconf import DictConfig, OmegaConf

from qsnn.nn.quant.apply import quantize_weights
from qsnn.nn.speed import compile_net, fused_on_cuda
from qsnn.run import job_console
from qsnn.run.callbacks import EpochSchedules, History, drop_logger_callbacks
from qsnn.run.guard import DeadNetworkMonitor
from qsnn.run.module import QSNNModule
from qsnn.run.resume import wandb_run_id
from qsnn.run.summary import wandb_info

log = logging.getLogger("qsnn")


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
    if cfg.surrogate.get("stability"):  # papers/002: weight mean + per-layer gamma/beta from one batch
        from qsnn.nn.surrogate.stability import stability_init

        net.stability_init = stability_init(net, calibration_batch(dm))
    q = cfg.quant
    return quantize_weights(net, instantiate(q.weight) if q.get("weight") else None, bits=q.bits,
                            keep_first_fp=q.keep_first_fp, keep_last_fp=q.keep_last_fp)


def calibration_batch(dm) -> torch.Tensor:
    """One encoded training batch [T, B, ...], for build-time initialisations."""
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    return dm.on_after_batch_transfer(batch, 0)[0]


def build_module(cfg: DictConfig, dm) -> QSNNModule:
    # loss.sparsity (papers/002) is our term added to the snnTorch loss, not an argument of it
    loss_fn = instantiate({k: v for k, v in cfg.loss.items() if k != "sparsity"})
    sparsity = cfg.loss.get("sparsity")
    # on CUDA: the optimizer fused, the net compiled if compile= says so (qsnn.nn.speed; no-ops on CPU)
    return QSNNModule(net=compile_net(build_net(cfg, dm), cfg.get("compile", False)), loss_fn=loss_fn,
                      optimizer=fused_on_cuda(instantiate(cfg.optim)),
                      scheduler=instantiate(cfg.sched), num_classes=dm.num_classes, bits=cfg.quant.bits,
                      sparsity=instantiate(sparsity) if sparsity and sparsity.get("weight") else None)


def build_loggers(cfg: DictConfig) -> list:
    loggers = [_build_logger(c, cfg) for c in (cfg.get("logger") or {}).values() if c and "_target_" in c]
    return [lg for lg in loggers if lg is not None]


def _build_logger(c: DictConfig, cfg: DictConfig):
    if not str(c._target_).endswith("WandbLogger"):
        return instantiate(c)
    # one W&B run per job, the same one when the job is resumed (WandbLogger passes resume="allow")
    run_id = wandb_run_id(cfg.paths.output_dir)
    runs_dir = Path(c.get("save_dir") or cfg.paths.output_dir) / "wandb"
    for mode in (None, "offline"):
        before = set(runs_dir.glob("*run-*"))
        lg = instantiate(c, id=run_id) if mode is None else instantiate(c, id=run_id, mode=mode)
        try:
            lg.experiment  # start W&B now: no key, no network or a service error must not cost the run
            return lg
        except Exception as e:
            log.warning("W&B %s failed (%s): %s", mode or c.get("mode"), f"{type(e).__name__}: {e}".splitlines()[0],
                        "logging offline instead" if mode is None else "no W&B for this run")
            _reset_wandb()
            for d in set(runs_dir.glob("*run-*")) - before:  # the failed attempt's run dir: nothing in it to sync
                shutil.rmtree(d, ignore_errors=True)
    return None


def _reset_wandb() -> None:
    """After a failed init W&B's service still holds the run id ("run ID ... is in use"): stop
    it, so the offline run with the same id can start."""
    try:
        import wandb

        wandb.teardown()
    except Exception:
        pass


def cost_max_batches(cfg: DictConfig) -> int | None:
    """``cost.max_batches``: test batches the cost pass counts (null: all; see qsnn.cost.metrics)."""
    return OmegaConf.select(cfg, "cost.max_batches", default=None)


def has_val(dm) -> bool:
    """False for a data module built without a validation set (``data.val_size=0``)."""
    return getattr(dm, "val_size", None) != 0


def build_callbacks(cfg: DictConfig, with_val: bool = True) -> list:
    """The configured callbacks. Without a validation set (``data.val_size=0``, the reference
    recipe) nothing can monitor ``val/``: early stopping is left out and checkpoints keep the
    latest epoch (``monitor=None``), so the last weights are tested."""
    out = []
    for c in (cfg.get("callbacks") or {}).values():
        if not c or "_target_" not in c:
            continue
        if not with_val and str(c.get("monitor", "")).startswith("val/"):
            if str(c._target_).endswith("EarlyStopping"):
                continue
            out.append(instantiate(c, monitor=None))
        else:
            out.append(instantiate(c))
    return out


def build_trainer(cfg: DictConfig, module: QSNNModule, dm, loggers: list, resolved: dict, history: History,
                  summary: dict) -> L.Trainer:
    """The Lightning trainer with the config's callbacks; logs the config and the model's size."""
    chosen = getattr(module.net, "stability_init", None)
    for lg in loggers:
        # the group choices too (sched=cosine is not in the resolved config): dashboards group by them
        lg.log_hyperparams({**resolved, "choices": summary["choices"]})
        if chosen:
            lg.log_hyperparams({"surrogate_stability": chosen})
    if chosen:
        summary["surrogate_stability"] = chosen
    summary.update(model_size(module))
    summary["wandb"] = wandb_info(loggers)
    with_val = has_val(dm)
    settings = {} if with_val else {"limit_val_batches": 0}
    callbacks = drop_logger_callbacks(build_callbacks(cfg, with_val), loggers)
    if job_console.active():  # a multirun's job has no console: no progress bar, its epoch lines go to its log
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
        settings["enable_progress_bar"] = False
    callbacks += [history, EpochSchedules(), DeadNetworkMonitor()]
    return instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, **settings)


def model_size(module: QSNNModule) -> dict:
    """``weight_bits`` and ``weight_saving_vs_fp32`` of the summary."""
    n_params = sum(p.numel() for p in module.net.parameters())
    return {"weight_bits": module.weight_bits, "weight_saving_vs_fp32": 32 * n_params / max(module.weight_bits, 1)}

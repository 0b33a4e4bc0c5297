"""Build everything from a composed config and run it. ``src/train.py`` and ``src/eval.py``
are thin Hydra wrappers around ``train()`` and ``evaluate()``.

Every job writes ``summary.json`` in its output dir (atomically: temp file + rename) with its
status, overrides, choices, metrics and history; the sweep report reads those files.
"""
from __future__ import annotations

import json
import logging
import time
import traceback
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from qsnn.callbacks import EpochSchedules, History, drop_logger_callbacks
from qsnn.guard import DeadNetworkMonitor, dead_network_warnings
from qsnn.checkpoint_io import check_state_matches, load_checkpoint
from qsnn.metrics import log_test_cost
from qsnn.module import QSNNModule
from qsnn.quant.apply import quantize_weights
from qsnn.resume import (check_eval_config, check_output_dir, check_same_config, finished_summary,
                         last_checkpoint, wandb_run_id, wants_resume)
from qsnn.run_dir import atomic_write_text, holds_run, locked, write_run_config
from qsnn.validate import validate

log = logging.getLogger("qsnn")


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
    if cfg.surrogate.get("stability"):  # papers/002: weight mean + per-layer gamma/beta from one batch
        from qsnn.surrogate.stability import stability_init

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
    return QSNNModule(net=build_net(cfg, dm), loss_fn=loss_fn, optimizer=instantiate(cfg.optim),
                      scheduler=instantiate(cfg.sched), num_classes=dm.num_classes, bits=cfg.quant.bits,
                      compile=cfg.get("compile", False),
                      sparsity=instantiate(sparsity) if sparsity and sparsity.get("weight") else None)


def build_loggers(cfg: DictConfig) -> list:
    loggers = [_build_logger(c, cfg) for c in (cfg.get("logger") or {}).values() if c and "_target_" in c]
    return [lg for lg in loggers if lg is not None]


def _build_logger(c: DictConfig, cfg: DictConfig):
    if not str(c._target_).endswith("WandbLogger"):
        return instantiate(c)
    # one W&B run per job, the same one when the job is resumed (WandbLogger passes resume="allow")
    run_id = wandb_run_id(cfg.paths.output_dir)
    for mode in (None, "offline"):
        lg = instantiate(c, id=run_id) if mode is None else instantiate(c, id=run_id, mode=mode)
        try:
            lg.experiment  # start W&B now: no key, no network or a service error must not cost the run
            return lg
        except Exception as e:
            log.warning("W&B %s failed (%s): %s", mode or c.get("mode"), f"{type(e).__name__}: {e}".splitlines()[0],
                        "logging offline instead" if mode is None else "no W&B for this run")
            _reset_wandb()
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
    """``cost.max_batches``: test batches the cost pass counts (null: all; see qsnn.metrics)."""
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


def print_config(cfg: DictConfig) -> None:
    """Print the resolved config as a rich tree (train() saves it as config_resolved.yaml)."""
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
    """Validate, claim the output dir, build, fit, test, write. Returns the summary dict (also
    written to summary.json).

    Nothing in a dir that holds a run changes until the config is valid, the dir is locked and the
    resume checks have passed (config, checkpoint readable); its summary.json only once the model
    is built and matches the checkpoint: a refused job leaves every file there as it was. A
    refused job in a fresh dir (a sweep's bad job) still gets a summary.json saying why.
    """
    t_start = time.perf_counter()
    out_dir = Path(cfg.paths.output_dir)
    try:
        validate(cfg)
    except Exception as e:
        record_refusal(out_dir, e)
        raise
    with locked(out_dir) if is_rank_zero() else nullcontext():  # DDP ranks > 0 work in rank 0's dir
        held_run = holds_run(out_dir)
        try:
            ckpt_path, ckpt, done = plan_start(cfg, out_dir)
        except Exception as e:
            record_refusal(out_dir, e)
            raise
        if done is not None:
            return done
        return run(cfg, out_dir, ckpt_path, ckpt, held_run, t_start)


def record_refusal(out_dir: Path, e: Exception) -> None:
    """A sweep's refused job still gets a summary saying why; never over a previous run's files."""
    if is_rank_zero() and not holds_run(out_dir) and not (out_dir / "summary.json").exists():
        atomic_write_text(out_dir / "summary.json", json.dumps(
            {"status": "failed", **hydra_info(), "error": f"{type(e).__name__}: {e}".splitlines()[0],
             "metrics": {}, "output_dir": str(out_dir)}, indent=1, default=str))


def plan_start(cfg: DictConfig, out_dir: Path) -> tuple[str | None, dict | None, dict | None]:
    """Where the job starts from: (checkpoint path, its content, None), or (.., .., the finished
    run's summary) when a re-launched sweep job has nothing left to do. Raises on a dir that
    holds another run, a resume with a changed config, or a checkpoint that cannot be used."""
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path == "last":
        ckpt_path = None
    if not is_rank_zero():  # rank 0 checked the dir and the checkpoint
        last = last_checkpoint(out_dir) if wants_resume(cfg) else None
        return (str(last) if last else ckpt_path), None, None
    check_output_dir(cfg)
    if wants_resume(cfg):
        check_same_config(cfg, out_dir, hydra_info()["choices"])
        done = finished_summary(out_dir, hydra_info()["overrides"])
        if done is not None:  # a re-launched sweep skips the jobs that already finished
            log.info("%s finished already (summary.json status ok): skipped", out_dir)
            return None, None, done
        last = last_checkpoint(out_dir)
        ckpt_path = str(last) if last else None
        log.info("resuming from %s" if last else "nothing to resume in %s: starting from scratch", last or out_dir)
    ckpt = load_checkpoint(ckpt_path, trust=cfg.get("trust_checkpoint", False)) if ckpt_path else None
    return ckpt_path, ckpt, None


def run(cfg: DictConfig, out_dir: Path, ckpt_path: str | None, ckpt: dict | None, held_run: bool,
        t_start: float) -> dict[str, Any]:
    """Write the config, build, check the checkpoint, fit, test; summary.json in every outcome once
    the model is built and matches the checkpoint (and in any outcome when the dir held no run)."""
    summary: dict[str, Any] = {"status": "running", "resumed_from": ckpt_path, **hydra_info(), "seed": cfg.get("seed"),
                               "bits": cfg.quant.bits, "output_dir": str(out_dir)}
    trainer, loggers, history, owns_dir = None, [], History(), not held_run
    threads_before = torch.get_num_threads()  # restored below: an in-process run must not leak it
    try:
        # the checks passed: the job's config goes into its dir (the report finds a job killed from here on)
        resolved = write_run_config(cfg, out_dir) if is_rank_zero() else OmegaConf.to_container(cfg, resolve=True)
        if cfg.get("torch_threads"):  # parallel sweep jobs: 1 thread each beats N jobs x N threads
            torch.set_num_threads(int(cfg.torch_threads))
        if cfg.get("seed") is not None:
            L.seed_everything(cfg.seed, workers=True, verbose=False)
        dm = build_datamodule(cfg)
        dm.prepare_data()
        summary["num_classes"] = getattr(dm, "num_classes", None)  # the report's chance level
        module = build_module(cfg, dm)
        if ckpt is not None:
            check_state_matches(ckpt, ckpt_path, module)  # one clear line instead of a state_dict mismatch dump
        owns_dir = True  # from here on the job writes its dir, and summary.json says how it ended
        loggers = build_loggers(cfg)
        trainer = build_trainer(cfg, module, dm, loggers, resolved, history, summary)
        summary["startup_s"] = time.perf_counter() - t_start
        summary.update(fit_and_test(cfg, trainer, module, dm, loggers, ckpt_path, history))
        summary["status"] = "ok"
    except Exception as e:
        summary.update(status="failed", error=f"{type(e).__name__}: {e}".splitlines()[0],
                       traceback=traceback.format_exc(), metrics=_metrics(trainer))
        raise
    except BaseException as e:  # SIGTERM (Lightning raises SystemExit) or Ctrl-C: resume=true continues
        summary.update(status="interrupted", error=f"interrupted ({type(e).__name__}); continue with resume=true",
                       metrics=_metrics(trainer))
        raise
    finally:
        torch.set_num_threads(threads_before)
        summary.setdefault("epochs", history.epochs)
        summary.setdefault("lr", history.lr)
        summary["wall_s"] = time.perf_counter() - t_start
        _mark_wandb(loggers, summary)
        _finish_loggers(loggers)
        if is_rank_zero() and owns_dir:  # under DDP every rank runs train(); one summary per job
            atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=1, default=str))
    return summary


def wandb_info(loggers: list) -> dict[str, Any] | None:
    """The job's W&B run: {id, mode, dir, url, sync} (qsnn.wandb_logger.run_info), None without one."""
    from qsnn.wandb_logger import run_info

    for lg in loggers:
        if type(lg).__name__ == "WandbLogger" and getattr(lg, "_experiment", None) is not None:
            return run_info(lg.experiment)
    return None


def build_trainer(cfg: DictConfig, module: QSNNModule, dm, loggers: list, resolved: dict, history: History,
                  summary: dict[str, Any]) -> L.Trainer:
    """The Lightning trainer with the config's callbacks; logs the config and the model's size."""
    chosen = getattr(module.net, "stability_init", None)
    for lg in loggers:
        # the group choices too (sched=cosine is not in the resolved config): dashboards group by them
        lg.log_hyperparams({**resolved, "choices": summary["choices"]})
        if chosen:
            lg.log_hyperparams({"surrogate_stability": chosen})
    if chosen:
        summary["surrogate_stability"] = chosen
    summary["weight_bits"] = module.weight_bits
    n_params = sum(p.numel() for p in module.net.parameters())
    summary["weight_saving_vs_fp32"] = 32 * n_params / max(module.weight_bits, 1)
    summary["wandb"] = wandb_info(loggers)
    with_val = has_val(dm)
    no_val = {} if with_val else {"limit_val_batches": 0}
    callbacks = drop_logger_callbacks(build_callbacks(cfg, with_val), loggers)
    callbacks += [history, EpochSchedules(), DeadNetworkMonitor()]
    return instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, **no_val)


def fit_and_test(cfg: DictConfig, trainer: L.Trainer, module: QSNNModule, dm, loggers: list,
                 ckpt_path: str | None, history: History) -> dict[str, Any]:
    """Train (from ``ckpt_path`` when given), then test the best checkpoint; returns timings,
    history and metrics for the summary."""
    weights_only = not cfg.get("trust_checkpoint", False)
    t_fit = time.perf_counter()
    if cfg.get("train", True):
        trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path, weights_only=weights_only)
    out: dict[str, Any] = {"fit_s": time.perf_counter() - t_fit}
    # copy now: test(ckpt_path="best") restores callback state, History included, from that checkpoint
    out["epochs"], out["lr"] = list(history.epochs), list(history.lr)
    if warnings := dead_network_warnings(trainer):  # "dead network?" (qsnn.guard): console and summary
        out["warnings"] = warnings
    metrics = _metrics(trainer)
    if cfg.get("test", True):
        ckpt = "best" if has_val(dm) and _has_best_ckpt(trainer) else None  # no val: the last weights
        trainer.test(module, datamodule=dm, ckpt_path=ckpt, verbose=False, weights_only=True)
        metrics.update(_metrics(trainer))
        t_cost = time.perf_counter()
        metrics.update(log_test_cost(trainer, module, dm, loggers, cost_max_batches(cfg)))
        out["cost_s"] = time.perf_counter() - t_cost
    out["metrics"] = metrics
    return out


def _mark_wandb(loggers: list, summary: dict[str, Any]) -> None:
    """Put the job's status (and why it failed), its test and cost metrics and its times in its W&B
    run summary, and close the run with a matching exit code (W&B shows a failed job as failed);
    finishing also flushes the run file."""
    metrics = {k: v for k, v in (summary.get("metrics") or {}).items() if k.startswith(("test/", "cost/"))}
    times = {f"time/{k}": summary[k] for k in ("startup_s", "fit_s", "wall_s") if k in summary}
    for lg in loggers:
        if type(lg).__name__ == "WandbLogger" and getattr(lg, "_experiment", None) is not None:
            try:
                lg.experiment.summary.update({"status": summary["status"], "error": summary.get("error", ""),
                                              **metrics, **times})
                lg.experiment.finish(exit_code=0 if summary["status"] == "ok" else 1)
            except Exception as e:  # W&B trouble must not hide the run's own result
                log.warning("W&B: could not record the job's status (%s)", f"{type(e).__name__}: {e}".splitlines()[0])


def is_rank_zero() -> bool:
    """False in the extra processes of a multi-device run (Lightning sets their rank from the
    env: LOCAL_RANK/RANK/SLURM_PROCID, then from the strategy)."""
    from lightning.pytorch.utilities import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def _has_best_ckpt(trainer: L.Trainer) -> bool:
    cb = trainer.checkpoint_callback
    return bool(cb is not None and getattr(cb, "best_model_path", ""))


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Test a checkpoint (``ckpt_path``) with the model described by the config; refuse one that
    is unsafe to load or was trained with another model, quantizer or data config. Returns the
    summary dict, also written to summary.json in the output dir (task "eval")."""
    t_start = time.perf_counter()
    validate(cfg)
    if not cfg.get("ckpt_path"):
        raise FileNotFoundError("ckpt_path is required: src/eval.py ckpt_path=/path/to/checkpoint.ckpt")
    if cfg.get("export"):
        from qsnn.export import check_exportable

        check_exportable(cfg)  # before the test pass, not after
    trust = bool(cfg.get("trust_checkpoint", False))
    ckpt = load_checkpoint(cfg.ckpt_path, trust=trust)
    check_eval_config(cfg, cfg.ckpt_path, ckpt, hydra_info()["choices"])
    dm = build_datamodule(cfg)
    dm.prepare_data()
    module = build_module(cfg, dm)
    check_state_matches(ckpt, cfg.ckpt_path, module)
    del ckpt
    trainer = instantiate(cfg.trainer, logger=False, callbacks=[])
    t_test = time.perf_counter()
    trainer.test(module, datamodule=dm, ckpt_path=cfg.ckpt_path, verbose=False,  # the table: qsnn.console
                 weights_only=not trust)
    metrics = {**_metrics(trainer), **log_test_cost(trainer, module, dm, [], cost_max_batches(cfg))}
    summary = {"status": "ok", "task": "eval", **hydra_info(), "ckpt_path": str(cfg.ckpt_path), "bits": cfg.quant.bits,
               "output_dir": str(cfg.paths.output_dir), "metrics": metrics, "startup_s": t_test - t_start,
               "test_s": time.perf_counter() - t_test}
    if cfg.get("export"):
        from qsnn.export import export

        for path in export(module.net, cfg.export, Path(cfg.paths.output_dir), list(dm.input_shape)):
            print(f"exported: {path}")
    if is_rank_zero():
        atomic_write_text(Path(cfg.paths.output_dir) / "summary.json", json.dumps(summary, indent=1, default=str))
    return summary

"""One job, start to summary: ``train()`` and ``evaluate()``, which ``src/train.py`` and
``src/eval.py`` wrap. The parts come from ``qsnn.run.build``; what the job writes about itself
from ``qsnn.run.summary``.

Every job writes ``summary.json`` in its output dir (atomically: temp file + rename) with its
status, overrides, choices, metrics and history; the sweep report reads those files.
"""
from __future__ import annotations

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

from qsnn.cost.metrics import log_test_cost
from qsnn.run import interrupt
from qsnn.run.build import (build_datamodule, build_loggers, build_module, build_trainer, cost_max_batches,
                            has_val)
from qsnn.run.callbacks import History
from qsnn.run.checkpoint_io import check_state_matches, load_checkpoint, resume_candidates, resume_point
from qsnn.run.eval_config import eval_config
from qsnn.run.guard import dead_network_monitor, dead_network_warnings
from qsnn.run.module import QSNNModule
from qsnn.run.resume import check_eval_config, check_output_dir, check_same_config, finished_summary, wants_resume
from qsnn.run.run_dir import holds_run, locked, write_run_config
from qsnn.run.summary import (close_loggers, error_line, hydra_info, is_rank_zero, metrics_of, record_refusal,
                              write_summary)
from qsnn.run.validate import validate

log = logging.getLogger("qsnn")


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


def plan_start(cfg: DictConfig, out_dir: Path) -> tuple[str | None, dict | None, dict | None]:
    """Where the job starts from: (checkpoint path, its content, None), or (.., .., the finished
    run's summary) when a re-launched sweep job has nothing left to do. Raises on a dir that
    holds another run, a resume with a changed config, or a checkpoint that cannot be used."""
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path == "last":
        ckpt_path = None
    if not is_rank_zero():  # rank 0 checked the dir and the checkpoint
        last = (resume_candidates(out_dir) or [None])[0] if wants_resume(cfg) else None
        return (str(last) if last else ckpt_path), None, None
    check_output_dir(cfg)
    if wants_resume(cfg):
        check_same_config(cfg, out_dir, hydra_info()["choices"])
        done = finished_summary(out_dir, hydra_info()["overrides"])
        if done is not None:  # a re-launched sweep skips the jobs that already finished
            log.info("%s finished already (summary.json status ok): skipped", out_dir)
            return None, None, done
        last, ckpt = resume_point(out_dir, trust=cfg.get("trust_checkpoint", False))  # says which, or scratch
        return (str(last) if last else None), ckpt, None
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
        summary.update(status="failed", error=error_line(e), traceback=traceback.format_exc(),
                       metrics=metrics_of(trainer))
        raise
    except BaseException as e:  # SIGTERM (Lightning raises SystemExit) or Ctrl-C: resume=true continues
        summary.update(status="interrupted", error=f"interrupted ({interrupt.reason(e)}); continue with resume=true",
                       metrics=metrics_of(trainer))
        raise
    finally:
        torch.set_num_threads(threads_before)
        summary.setdefault("epochs", history.epochs)
        summary.setdefault("lr", history.lr)
        summary["wall_s"] = time.perf_counter() - t_start
        close_loggers(loggers, summary)
        if is_rank_zero() and owns_dir:  # under DDP every rank runs train(); one summary per job
            write_summary(out_dir, summary)
    return summary


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
    if warnings := dead_network_warnings(trainer):  # "dead network?" (qsnn.run.guard): console and summary
        out["warnings"] = warnings
    metrics = metrics_of(trainer)
    if cfg.get("test", True):
        ckpt = "best" if has_val(dm) and _has_best_ckpt(trainer) else None  # no val: the last weights
        trainer.test(module, datamodule=dm, ckpt_path=ckpt, verbose=False, weights_only=True)
        metrics.update(metrics_of(trainer))
        monitor = dead_network_monitor(trainer)
        if monitor is not None and (w := monitor.test_end(metrics, int(getattr(dm, "num_classes", 0) or 0))):
            out["warnings"] = [*out.get("warnings", []), w]  # a test at chance, even after one epoch
        t_cost = time.perf_counter()
        metrics.update(log_test_cost(trainer, module, dm, loggers, cost_max_batches(cfg)))
        out["cost_s"] = time.perf_counter() - t_cost
    out["metrics"] = metrics
    return out


def _has_best_ckpt(trainer: L.Trainer) -> bool:
    cb = trainer.checkpoint_callback
    return bool(cb is not None and getattr(cb, "best_model_path", ""))


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Test a checkpoint (``ckpt_path``) with the config of the run that made it (its
    config_resolved.yaml, targets checked first; ``qsnn.run.eval_config``), else with the config
    given; refuse one that is unsafe to load or was trained with other values than given. Returns
    the summary dict, also written to summary.json in the output dir (task "eval")."""
    t_start = time.perf_counter()
    validate(cfg)
    if not cfg.get("ckpt_path"):
        raise FileNotFoundError("ckpt_path is required: src/eval.py ckpt_path=/path/to/checkpoint.ckpt")
    info = hydra_info()
    cfg, from_run = eval_config(cfg, info["overrides"], info["choices"])
    if from_run:
        validate(cfg)
    if cfg.get("export"):
        from qsnn.cost.export import check_exportable

        check_exportable(cfg)  # before the test pass, not after
    trust = bool(cfg.get("trust_checkpoint", False))
    ckpt = load_checkpoint(cfg.ckpt_path, trust=trust)
    check_eval_config(cfg, cfg.ckpt_path, ckpt, None if from_run else info["choices"])
    dm = build_datamodule(cfg)
    dm.prepare_data()
    module = build_module(cfg, dm)
    check_state_matches(ckpt, cfg.ckpt_path, module)
    del ckpt
    trainer = instantiate(cfg.trainer, logger=False, callbacks=[])
    t_test = time.perf_counter()
    trainer.test(module, datamodule=dm, ckpt_path=cfg.ckpt_path, verbose=False,  # the table: qsnn.run.console
                 weights_only=not trust)
    metrics = {**metrics_of(trainer), **log_test_cost(trainer, module, dm, [], cost_max_batches(cfg))}
    summary = {"status": "ok", "task": "eval", **hydra_info(), "ckpt_path": str(cfg.ckpt_path), "bits": cfg.quant.bits,
               "output_dir": str(cfg.paths.output_dir), "metrics": metrics, "startup_s": t_test - t_start,
               "test_s": time.perf_counter() - t_test}
    if cfg.get("export"):
        from qsnn.cost.export import export

        for path in export(module.net, cfg.export, Path(cfg.paths.output_dir), list(dm.input_shape)):
            print(f"exported: {path}")
    if is_rank_zero():
        write_summary(Path(cfg.paths.output_dir), summary)
    return summary

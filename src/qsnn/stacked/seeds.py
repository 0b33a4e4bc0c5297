"""One seed's job inside a stacked group: everything a user sees of it is what a single run writes.

``SeedJob.setup`` builds the seed's data and model exactly as ``runner.train`` does (same order,
same seeding, so the same initial weights); the seed's QSNNModule is kept as the per-seed
template the stacked net writes back into for checkpoints and the test. The seed's global RNG
streams (torch, numpy, python) live in ``SeedRNG`` and are swapped in around everything that
draws from them in a single run (data loader iterators, encodings, dropout masks), so each seed
sees the draws its single run would see.
"""
from __future__ import annotations

import contextlib
import logging
import random
import time
import traceback
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from qsnn.cost.metrics import log_test_cost
from qsnn.run import interrupt
from qsnn.run.build import build_datamodule, build_loggers, build_module, cost_max_batches, model_size
from qsnn.run.callbacks import History
from qsnn.run.checkpoint_io import AtomicCheckpointIO
from qsnn.run.guard import DeadNetworkMonitor
from qsnn.run.run_dir import atomic_write_text
from qsnn.run.summary import close_loggers, metrics_of, wandb_info, write_summary
from qsnn.stacked.support import select

log = logging.getLogger("qsnn")


class SeedRNG:
    """Each seed's global RNG states; ``use(s)`` makes seed s's the global ones for a while."""

    def __init__(self):
        self.states: list[tuple] = []

    @staticmethod
    def current() -> tuple:
        return torch.get_rng_state(), np.random.get_state(), random.getstate()

    def add(self) -> int:
        self.states.append(self.current())
        return len(self.states) - 1

    @contextlib.contextmanager
    def use(self, s: int):
        t, n, p = self.states[s]
        torch.set_rng_state(t), np.random.set_state(n), random.setstate(p)
        try:
            yield
        finally:
            self.states[s] = self.current()


class SeedJob:
    """One seed: config, data, per-seed module and metrics, checkpoints, summary, loggers."""

    def __init__(self, cfg: DictConfig, info: dict[str, Any], t0: float):
        self.cfg, self.info, self.t0 = cfg, info, t0
        self.out_dir = Path(cfg.paths.output_dir)
        self.summary: dict[str, Any] = {"status": "running", "resumed_from": None, **info, "seed": cfg.get("seed"),
                                        "bits": cfg.quant.bits, "output_dir": str(self.out_dir)}
        self.history = History()  # the single run's callbacks, called by the stacked loop
        self.monitor = DeadNetworkMonitor()
        self.loggers: list = []
        self.done = False
        self.best_score: float | None = None  # ModelCheckpoint's top-1 (monitor value) and file
        self.best_path = ""

    # -- building ---------------------------------------------------------------------------------
    def setup(self, dtype: torch.dtype, device: torch.device, rng: SeedRNG) -> int:
        """Build as ``runner.train`` does; returns this seed's index in ``rng``."""
        cfg = self.cfg
        if cfg.get("seed") is not None:
            L.seed_everything(cfg.seed, workers=True, verbose=False)
        resolved = OmegaConf.to_container(cfg, resolve=True)
        atomic_write_text(self.out_dir / "config_resolved.yaml", OmegaConf.to_yaml(OmegaConf.create(resolved)))
        self.dm = build_datamodule(cfg)
        self.dm.prepare_data()
        self.summary["num_classes"] = getattr(self.dm, "num_classes", None)  # the report's chance level
        self.module = build_module(cfg, self.dm)
        self.loggers = build_loggers(_several_wandb_runs(cfg))
        for lg in self.loggers:
            lg.log_hyperparams({**resolved, "choices": self.summary["choices"]})
        self.summary["wandb"] = wandb_info(self.loggers)
        self.summary.update(model_size(self.module))
        self.module.to(device)
        if dtype == torch.float64:  # as Lightning's precision=64 does (torchmetrics states stay float32)
            self.module.double()
        self.dm.setup("fit")
        _init_quantizers(self.module.net)  # the first forward of a single run does this; same weights, same scales
        self.es = _early_stopping(cfg)
        return rng.add()

    def loaders(self):
        return self.dm.train_dataloader(), self.dm.val_dataloader()

    # -- per epoch --------------------------------------------------------------------------------
    def end_epoch(self, epoch: int, global_step: int, metrics: dict[str, float], samples: int) -> bool:
        """Record the epoch (History, DeadNetworkMonitor, loggers), early stopping; True if this seed
        stops here. ``samples``: training samples seen this epoch."""
        self.history.add_epoch(metrics, epoch)
        self.monitor.epoch_end(epoch, metrics, samples, int(self.summary.get("num_classes") or 0))
        for lg in self.loggers:
            lg.log_metrics({**metrics, "epoch": epoch}, step=global_step - 1)
        stop = False
        if self.es is not None:
            current = torch.tensor(metrics[self.es.monitor])
            stop, _ = self.es._evaluate_stopping_criteria(current)
        self.metrics = metrics
        return stop

    def save_checkpoints(self, epoch: int, global_step: int, opt_state: dict, sched_state: dict | None,
                         loop_state: dict) -> None:
        """ModelCheckpoint(save_top_k=1, save_last=True, save_on_train_epoch_end=True) with this seed's
        weights; same files, same epochs as Lightning's (which updates last.ckpt only with a new best)."""
        ckpt = {"epoch": epoch, "global_step": global_step, "pytorch-lightning_version": L.__version__,
                "state_dict": self.module.state_dict(), "hyper_parameters": dict(self.module.hparams),
                "optimizer_states": [opt_state], "lr_schedulers": [sched_state] if sched_state else []}
        io = AtomicCheckpointIO()
        ck = select(self.cfg, "callbacks.model_checkpoint")
        if not ck:
            return
        dirpath = Path(ck.dirpath)
        current = float(self.metrics.get(ck.monitor, float("nan")))
        if not np.isfinite(current):
            current = float("-inf") if ck.get("mode", "min") == "max" else float("inf")
        better = self.best_score is None or (current > self.best_score if ck.get("mode", "min") == "max"
                                             else current < self.best_score)
        if better:
            name = ck.get("filename") or "{epoch}"
            path = dirpath / (name.format(epoch=epoch, step=global_step) + ".ckpt")
            self.best_score, old, self.best_path = current, self.best_path, str(path)
            io.save_checkpoint({**ckpt, "qsnn_stacked": self._loop_state(loop_state)}, path)
            if old and old != str(path):
                Path(old).unlink(missing_ok=True)
        # Lightning's ModelCheckpoint writes last.ckpt only in an epoch that saved top-k; RunCheckpoint every epoch
        every_epoch = str(ck.get("_target_", "")).endswith("RunCheckpoint")
        if ck.get("save_last") and (better or every_epoch):
            io.save_checkpoint({**ckpt, "qsnn_stacked": self._loop_state(loop_state)}, dirpath / "last.ckpt")

    def _loop_state(self, loop_state: dict) -> dict:
        return {**loop_state, **self.history.state_dict(), "best_score": self.best_score,
                "best_path": self.best_path, "early_stopping": self.es.state_dict() if self.es else None,
                "dead_network": self.monitor.state_dict()}

    # -- finishing --------------------------------------------------------------------------------
    def finish(self, rng: SeedRNG, s: int, error: BaseException | None = None,
               last_epoch: int | None = None) -> dict[str, Any]:
        """Test the best checkpoint (as ``runner.train`` does) and write summary.json; once.
        ``last_epoch``: the epoch training ended with (not given when it stopped on an error)."""
        self.done = True
        metrics = dict(getattr(self, "metrics", {}))
        self.summary.update(epochs=list(self.history.epochs), lr=list(self.history.lr))
        try:
            if error is not None:
                raise error
            self.monitor.fit_end(last_epoch)
            if self.monitor.warnings:  # "dead network?": in the summary as a single run has it
                self.summary["warnings"] = list(self.monitor.warnings)
            if self.cfg.get("test", True):
                with rng.use(s):
                    metrics.update(self._test())
                if w := self.monitor.test_end(metrics, int(self.summary.get("num_classes") or 0)):
                    self.summary["warnings"] = [*self.summary.get("warnings", []), w]
            self.summary.update(status="ok", metrics=metrics)
        except Exception as e:
            self.summary.update(status="failed", error=f"{type(e).__name__}: {e}".splitlines()[0],
                                traceback="".join(traceback.format_exception(e)), metrics=metrics)
            log.error("job failed: %s (%s)", self.summary["error"], self.out_dir)
        except BaseException as e:  # Ctrl-C or SIGTERM during the test
            self.interrupted(e, write=False)
            raise
        finally:
            self._write()
        return self.summary

    def interrupted(self, e: BaseException, write: bool = True) -> None:
        """Ctrl-C or SIGTERM: say so; the last checkpoint is intact and resume=true continues."""
        self.done = True
        self.summary.update(status="interrupted", error=f"interrupted ({interrupt.reason(e)}); continue with "
                            "resume=true", metrics=dict(getattr(self, "metrics", {})),
                            epochs=list(self.history.epochs), lr=list(self.history.lr))
        if write:
            self._write()

    def _write(self) -> None:
        self.summary["wall_s"] = time.perf_counter() - self.t0
        close_loggers(self.loggers, self.summary)
        write_summary(self.out_dir, self.summary)

    def _test(self) -> dict[str, float]:
        # the monitor counts the test samples (its test_end: a test at chance)
        trainer = instantiate(self.cfg.trainer, logger=self.loggers or False, callbacks=[self.monitor],
                              enable_progress_bar=False)
        trainer.test(self.module, datamodule=self.dm, ckpt_path=self.best_path or None, verbose=False)
        metrics, t_cost = metrics_of(trainer), time.perf_counter()
        metrics.update(log_test_cost(trainer, self.module, self.dm, self.loggers, cost_max_batches(self.cfg)))
        self.summary["cost_s"] = time.perf_counter() - t_cost
        return metrics

    def times(self, **t: float) -> None:
        self.summary.update(t)


def _early_stopping(cfg: DictConfig):
    es = select(cfg, "callbacks.early_stopping")
    return instantiate(es) if es and "_target_" in es else None


def _several_wandb_runs(cfg: DictConfig) -> DictConfig:
    """The logger config with W&B's reinit="create_new": one W&B run per seed in this process."""
    cfg = cfg.copy()
    with open_dict(cfg):
        for c in (cfg.get("logger") or {}).values():
            if c and str(c.get("_target_", "")).endswith("WandbLogger"):
                c.reinit = "create_new"
    return cfg


@torch.no_grad()
def _init_quantizers(net: torch.nn.Module) -> None:
    for m in net.modules():
        if hasattr(m, "parametrizations") and "weight" in m.parametrizations:
            m.weight  # a quantizer that sets its scales from the first weight it sees does it now


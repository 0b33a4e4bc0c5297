"""Train the seeds of one setting as one stacked model: a plain training loop.

Why a plain loop and not Lightning: a Trainer has one stop flag, one set of callbacks and one
checkpoint per step, while here every seed stops early, diverges, picks its best checkpoint and
logs to its own W&B run on its own. The per-step and per-epoch duties are the single run's own
objects, called per seed: ``DivergenceGuard`` (gradient norm before the step, loss after),
``ClampWeights``, ``EpochSchedules``, ``History`` and ``DeadNetworkMonitor`` (``qsnn.run.guard``,
``qsnn.run.callbacks``), Lightning's own ``EarlyStopping`` class (one per seed), the same
torchmetrics objects of each seed's QSNNModule. What the loop itself reproduces (docs/stacked.md
lists it): the per-step LR schedule, gradient clipping (norm or value), the epoch
metrics Lightning would log, ModelCheckpoint's files (top-1 + last, Lightning's checkpoint
format with that seed's state_dict, so ``eval.py`` and ``trainer.test`` load it). The test then
runs through a real Lightning Trainer per seed, on the best checkpoint, exactly as a single run
tests. A seed that stops (early stopping or divergence) is finished at that point (summary,
test, W&B) and its slice of the stacked model no longer feeds anything recorded. Tests:
``tests/test_stacked.py`` (equal to single runs).
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable

import torch
from hydra.utils import instantiate

from qsnn.errors import Diverged
from qsnn.run.callbacks import EpochSchedules
from qsnn.run.guard import DivergenceGuard
from qsnn.stacked.batches import EpochMeans, epoch_iterators, n_batches, next_batches
from qsnn.stacked.net import StackedNet
from qsnn.stacked.optim import MemberOptimizers
from qsnn.stacked.seeds import SeedJob, SeedRNG
from qsnn.stacked.support import select


def _seed_grad_norms(params, S: int) -> torch.Tensor:
    """Each seed's total gradient 2-norm ([S]), as ``torch.nn.utils.get_total_norm`` over its own grads."""
    norms = [torch.linalg.vector_norm(p.grad.reshape(S, -1), dim=1) for p in params if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack(norms), dim=0)


def _clip(params, S: int, tr, norms: torch.Tensor) -> None:
    val = tr.get("gradient_clip_val")
    if not val:
        return
    if tr.get("gradient_clip_algorithm") == "value":
        for p in params:
            if p.grad is not None:
                p.grad.clamp_(-val, val)
        return
    coef = (float(val) / (norms + 1e-6)).clamp(max=1.0)  # torch.nn.utils.clip_grads_with_norm_
    for p in params:
        if p.grad is not None:
            p.grad.view(S, -1).mul_(coef.view(S, 1))


def _callback(cfg, name: str):
    """The configured callback ``callbacks.<name>``, instantiated (None when not configured)."""
    c = select(cfg, f"callbacks.{name}")
    return instantiate(c) if c and c.get("_target_") else None


class StackedFit:
    """The stacked model, its optimizer and schedule, and the loop over epochs."""

    def __init__(self, jobs: list[SeedJob], rng: SeedRNG, device, dtype, on_stacked: Callable | None = None):
        self.jobs, self.rng, self.device, self.dtype = jobs, rng, device, dtype
        self.cfg = jobs[0].cfg
        self.tr = self.cfg.trainer
        self.S = len(jobs)
        self.net = StackedNet([j.module.net for j in jobs]).to(device=device, dtype=dtype)
        self.net.set_rng(rng)
        names = [n for n, _ in self.net.named_parameters()]
        if names != [n.removeprefix("net.") for n, _ in jobs[0].module.named_parameters()]:
            raise TypeError("stacked parameters are not in the order of the single model's")
        self.shapes = [p.shape for p in jobs[0].module.net.parameters()]
        self.loaders = [j.loaders() for j in jobs]
        n_train = {n_batches(len(t), self.tr.get("limit_train_batches")) for t, _ in self.loaders}
        n_val = {n_batches(len(v), self.tr.get("limit_val_batches")) for _, v in self.loaders}
        if len(n_train) != 1 or len(n_val) != 1:
            raise TypeError("seeds have different numbers of batches")
        self.n_train, self.n_val = n_train.pop(), n_val.pop()
        self.loss_fn = jobs[0].module.loss_fn
        self.max_epochs = int(self.tr.max_epochs)
        total = self.n_train * self.max_epochs
        # each member's own optimizer and schedule (members may differ in optim.* and sched.*)
        shared = all(select(j.cfg, k) == select(self.cfg, k) for j in jobs for k in ("optim", "sched"))
        self.opt = MemberOptimizers(list(self.net.parameters()), self.shapes, [j.module for j in jobs], shared,
                                    steps_per_epoch=max(math.ceil(total / self.max_epochs), 1), total_steps=total)
        # the single run's callbacks, one configuration for every member (they share callbacks.*)
        self.divergence_guard: DivergenceGuard | None = _callback(self.cfg, "divergence_guard")
        self.clamp_weights = _callback(self.cfg, "clamp_weights")
        self.epoch, self.global_step = 0, 0
        self.stop_flag = [False] * self.S
        # per member: metrics callbacks put into callback_metrics (the lr monitor)
        self.logged: list[dict[str, float]] = [{} for _ in jobs]
        if on_stacked is not None:  # tests: e.g. make one seed diverge
            on_stacked(self.net)

    def active(self) -> list[int]:
        return [s for s, j in enumerate(self.jobs) if not j.done]

    # -- the loop ---------------------------------------------------------------------------------
    def run(self, t_fit: float) -> None:
        for epoch in range(self.epoch, self.max_epochs):
            if not self.active():
                break
            self.epoch = epoch
            t0 = time.perf_counter()
            EpochSchedules.apply(self.net, epoch, self.max_epochs)
            self.lr_monitor(every_step=False)
            train = self.train_epoch(epoch)
            val = self.val_epoch()
            self.end_epoch(epoch, train, val, time.perf_counter() - t0, t_fit)
        for s in self.active():
            self.jobs[s].times(fit_s=time.perf_counter() - t_fit)
            self.jobs[s].finish(self.rng, s, last_epoch=self.epoch)

    def train_epoch(self, epoch: int) -> dict[str, Any]:
        self.net.train()
        its = epoch_iterators([t for t, _ in self.loaders], self.rng, epoch)
        rates, params, last = EpochMeans(), list(self.net.parameters()), [float("nan")] * self.S
        for _ in range(self.n_train):
            active = self.active()
            if not active:
                break
            for s in active:
                self.jobs[s].history.add_lr(self.opt.lr(s))
            self.lr_monitor(every_step=True)
            xs, ys = next_batches(self.jobs, its, self.rng, self.device, self.dtype)
            spk, _ = self.net(self.net.fold_input(xs))
            losses = [self.loss_fn(spk[:, :, s], ys[s]) for s in range(self.S)]
            self.opt.zero_grad()
            sum(losses[s] for s in active).backward()
            norms = _seed_grad_norms(params, self.S)
            self.guard(active, norms, "check_grad_norm", self.global_step)
            if self.clamp_weights is not None:
                self.clamp_weights.before_step(params)
            _clip(params, self.S, self.tr, norms)
            self.opt.step(self.active())
            self.global_step += 1
            if self.clamp_weights is not None:
                self.clamp_weights.after_step(params)
            self.guard(self.active(), torch.stack([x.detach().reshape(-1)[0] for x in losses]), "check_loss",
                       self.global_step - 1)
            for s in self.active():
                m = self.jobs[s].module
                m.acc["train_"].update(spk[:, :, s].sum(0).argmax(-1), ys[s])
                m.loss_mean["train_"].update(losses[s].detach().float())  # as QSNNModule._step
                last[s] = float(losses[s].detach())
            rates.add(self.net.rates, ys[0].shape[0])
        return {"rates": rates, "last": last}

    @torch.no_grad()
    def val_epoch(self) -> EpochMeans:
        self.net.eval()
        its = epoch_iterators([v for _, v in self.loaders], self.rng)
        rates = EpochMeans()
        for _ in range(self.n_val):
            xs, ys = next_batches(self.jobs, its, self.rng, self.device, self.dtype)
            spk, _ = self.net(self.net.fold_input(xs))
            for s in self.active():
                m = self.jobs[s].module
                m.acc["val_"].update(spk[:, :, s].sum(0).argmax(-1), ys[s])
                m.loss_mean["val_"].update(self.loss_fn(spk[:, :, s], ys[s]).float())
            rates.add(self.net.rates, ys[0].shape[0])
        return rates

    def lr_monitor(self, every_step: bool) -> None:
        """callbacks.lr_monitor: Lightning's LearningRateMonitor puts ``lr-<Optimizer>`` into the
        callback metrics (so into History) when it logs: every log_every_n_steps steps, or each epoch."""
        c = (self.cfg.get("callbacks") or {}).get("lr_monitor")
        if not c or not c.get("_target_") or not self.jobs[0].loggers:  # the runner drops it without a logger
            return
        interval = c.get("logging_interval")
        n = int(self.tr.get("log_every_n_steps", 50) or 0)
        if every_step and (interval == "epoch" or not n or (self.global_step + 1) % n):
            return
        if not every_step and interval == "step":
            return
        name = self.opt.name
        for s in self.active():
            self.logged[s][name] = float(torch.tensor(self.opt.lr(s)))  # a float32 tensor there
            for lg in self.jobs[s].loggers:
                lg.log_metrics({name: self.logged[s][name]}, step=self.global_step)

    def guard(self, active: list[int], values: torch.Tensor, check: str, step: int) -> None:
        """callbacks.divergence_guard per seed (``values``: one gradient norm or loss per member): a
        seed that diverges fails alone, the others go on. One finiteness test for all members first
        (the common case: all finite, one sync)."""
        g = self.divergence_guard
        if g is None or bool(torch.isfinite(values).all()):
            return
        where = g.where(self.epoch, step)
        for s in active:
            try:
                getattr(g, check)(values[s], where)
            except Diverged as e:
                self.jobs[s].finish(self.rng, s, error=e)

    def end_epoch(self, epoch: int, train: dict, val: EpochMeans, dt: float, t_fit: float) -> None:
        timer = (self.cfg.get("callbacks") or {}).get("epoch_timer")
        min_epochs = int(self.tr.get("min_epochs") or 0)
        line = []
        for s in self.active():
            job, m = self.jobs[s], self.jobs[s].module
            metrics = {**self.logged[s], "train/loss_step": train["last"][s]}
            metrics.update({"val/loss": float(m.loss_mean["val_"].compute()), "val/acc": float(m.acc["val_"].compute())})
            metrics.update({f"val/rate_layer{i}": r for i, r in enumerate(val.get(s))})
            if timer:
                metrics["time/epoch_s"] = dt
            m.val_acc_best(m.acc["val_"].compute())
            metrics["val/acc_best"] = float(m.val_acc_best.compute())
            metrics.update({"train/loss": float(m.loss_mean["train_"].compute()),
                            "train/acc": float(m.acc["train_"].compute())})
            metrics.update({f"train/rate_layer{i}": r for i, r in enumerate(train["rates"].get(s))})
            for split in ("train_", "val_"):
                m.acc[split].reset(), m.loss_mean[split].reset()
            self.stop_flag[s] |= job.end_epoch(epoch, self.global_step, metrics, train["rates"].n)
            self.net.write_back(s, m.net)
            job.save_checkpoints(epoch, self.global_step, *self.opt.state(s), self.loop_state(s))
            line.append(f"{metrics['val/acc']:.3f}")
            if self.stop_flag[s] and epoch + 1 >= min_epochs:
                job.times(fit_s=time.perf_counter() - t_fit)
                job.finish(self.rng, s, last_epoch=epoch)
        if timer and timer.get("verbose", True):
            print(f"epoch {epoch:3d}  {dt:6.2f}s  {self.S} seeds stacked  val/acc {' '.join(line)}", flush=True)

    def loop_state(self, s: int) -> dict[str, Any]:
        t, n, p = self.rng.states[s]
        kind, keys, pos, has_gauss, gauss = n
        return {"epoch": self.epoch, "global_step": self.global_step, "stop_flag": self.stop_flag[s],
                "rng": {"torch": t, "numpy": [kind, torch.from_numpy(keys.astype("int64")), pos, has_gauss, gauss],
                        "python": p}}

"""Small callbacks Lightning does not ship: per-epoch wall time, a local metric history, the
per-epoch schedules of quantizers and neurons, weight clamping; and two Lightning callbacks adjusted
(the progress bar without ``v_num``; the LR monitor kept only with a logger).

``History``, ``EpochSchedules`` and ``ClampWeights`` are also the objects the stacked loop
(``qsnn.stacked.loop``) calls per seed: their plain methods (``add_lr``/``add_epoch``, ``apply``,
``before_step``/``after_step``) do the work, the Lightning hooks only call them."""
from __future__ import annotations

import logging
import time

import lightning as L
from lightning.pytorch.callbacks import LearningRateMonitor, RichProgressBar

log = logging.getLogger("qsnn")


def _floats(metrics) -> dict[str, float]:
    out = {}
    for k, v in metrics.items():
        try:
            out[k] = float(v)
        except (TypeError, ValueError):
            pass
    return out


def say(trainer, text: str) -> None:
    """One line of output that never breaks a live rich progress bar: printed through the bar's own
    console (rich then draws it above the bar), else logged (``qsnn`` logger)."""
    console = getattr(trainer.progress_bar_callback, "_console", None)
    if console is not None:
        console.print(text, highlight=False, soft_wrap=True)
    else:
        log.info(text)


class EpochTimer(L.Callback):
    """Logs ``time/epoch_s`` and prints one line per epoch with its time and val accuracy."""

    def __init__(self, verbose: bool = True):
        self.verbose, self._t0 = verbose, 0.0

    def on_train_epoch_start(self, trainer, pl_module):
        self._t0 = time.perf_counter()

    def on_validation_epoch_end(self, trainer, pl_module):
        if trainer.sanity_checking or not self._t0:
            return
        dt = time.perf_counter() - self._t0
        pl_module.log("time/epoch_s", dt)
        if self.verbose:
            m = _floats(trainer.callback_metrics)
            say(trainer, f"epoch {trainer.current_epoch:3d}  {dt:6.2f}s  val/acc {m.get('val/acc', float('nan')):.4f}")


class History(L.Callback):
    """Keeps every epoch's logged metrics and the LR of every step, for the run summary."""

    def __init__(self):
        self.epochs: list[dict[str, float]] = []
        self.lr: list[float] = []

    def add_lr(self, lr: float) -> None:
        self.lr.append(float(lr))

    def add_epoch(self, metrics, epoch: int) -> None:
        self.epochs.append({**_floats(metrics), "epoch": epoch})

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.optimizers:
            self.add_lr(trainer.optimizers[0].param_groups[0]["lr"])

    def on_train_epoch_end(self, trainer, pl_module):
        self.add_epoch(trainer.callback_metrics, trainer.current_epoch)

    def state_dict(self):
        return {"epochs": self.epochs, "lr": self.lr}

    def load_state_dict(self, state):
        self.epochs, self.lr = state.get("epochs", []), state.get("lr", [])


class EpochSchedules(L.Callback):
    """Calls ``set_epoch(epoch, max_epochs)`` on every submodule that has it, at the start of each
    training epoch: the sigmoid-sum quantizer's temperature and the sigma-delta neuron's dt
    anneal this way (their schedules live in their own config)."""

    @staticmethod
    def apply(module, epoch: int, max_epochs: int | None) -> None:
        max_epochs = max_epochs if max_epochs and max_epochs > 0 else 1
        for m in module.modules():
            if hasattr(m, "set_epoch"):
                m.set_epoch(epoch, max_epochs)

    def on_train_epoch_start(self, trainer, pl_module):
        self.apply(pl_module, trainer.current_epoch, trainer.max_epochs)


class ClampWeights(L.Callback):
    """Clamps every weight matrix / kernel (parameters with dim > 1) to [min, max], as the QSNN
    paper's DVSGesture recipe does (weights in [-1, 1]). ``when="before_step"``: after backward,
    before the optimizer step, where the reference code clamps (so the stepped weights may leave
    the range by one step); ``"after_step"``: after each optimizer step (weights always in range).
    With a quantizer parametrization this clamps the underlying full-precision weight."""

    def __init__(self, min: float = -1.0, max: float = 1.0, when: str = "after_step"):
        if when not in ("before_step", "after_step"):
            raise ValueError(f"callbacks.clamp_weights.when={when!r} is not allowed: use before_step or after_step")
        self.min, self.max, self.when = float(min), float(max), when

    def _clamp(self, params) -> None:
        import torch

        with torch.no_grad():
            for p in params:
                if p.dim() > 1:
                    p.clamp_(self.min, self.max)

    def before_step(self, params) -> None:
        if self.when == "before_step":
            self._clamp(params)

    def after_step(self, params) -> None:
        if self.when == "after_step":
            self._clamp(params)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.before_step(pl_module.parameters())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.after_step(pl_module.parameters())


class ProgressBar(RichProgressBar):
    """Lightning's RichProgressBar without ``v_num``: the logger's version (a W&B run id and a
    counter, e.g. ``6m_0``) says nothing in a bar; the run is named in the end-of-run table."""

    def get_metrics(self, trainer, pl_module):
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        return items


def drop_logger_callbacks(callbacks: list, loggers: list) -> list:
    """Without a logger (``logger=none``, ``debug=fast_dev_run``) Lightning's LearningRateMonitor stops
    the run ("Cannot use LearningRateMonitor callback with Trainer that has no logger"): leave it out.
    The LR of every step is still in summary.json (History)."""
    if loggers:
        return callbacks
    return [c for c in callbacks if not isinstance(c, LearningRateMonitor)]

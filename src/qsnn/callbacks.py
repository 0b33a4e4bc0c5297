"""Small callbacks Lightning does not ship: per-epoch wall time and a local metric history."""
from __future__ import annotations

import time

import lightning as L


def _floats(metrics) -> dict[str, float]:
    out = {}
    for k, v in metrics.items():
        try:
            out[k] = float(v)
        except (TypeError, ValueError):
            pass
    return out


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
            print(f"epoch {trainer.current_epoch:3d}  {dt:6.2f}s  val/acc {m.get('val/acc', float('nan')):.4f}",
                  flush=True)


class History(L.Callback):
    """Keeps every epoch's logged metrics and the LR of every step, for the run summary."""

    def __init__(self):
        self.epochs: list[dict[str, float]] = []
        self.lr: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.optimizers:
            self.lr.append(float(trainer.optimizers[0].param_groups[0]["lr"]))

    def on_train_epoch_end(self, trainer, pl_module):
        m = _floats(trainer.callback_metrics)
        m["epoch"] = trainer.current_epoch
        self.epochs.append(m)

    def state_dict(self):
        return {"epochs": self.epochs, "lr": self.lr}

    def load_state_dict(self, state):
        self.epochs, self.lr = state.get("epochs", []), state.get("lr", [])


class EpochSchedules(L.Callback):
    """Calls ``set_epoch(epoch, max_epochs)`` on every submodule that has it, at the start of each
    training epoch: the sigmoid-sum quantizer's temperature and the sigma-delta neuron's dt
    anneal this way (their schedules live in their own config)."""

    def on_train_epoch_start(self, trainer, pl_module):
        max_epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else 1
        for m in pl_module.modules():
            if hasattr(m, "set_epoch"):
                m.set_epoch(trainer.current_epoch, max_epochs)


class ClampWeights(L.Callback):
    """Clamps every weight matrix / kernel (parameters with dim > 1) to [min, max] after each
    optimizer step, as the QSNN paper's DVSGesture recipe does (weights in [-1, 1]). With a
    quantizer parametrization this clamps the underlying full-precision weight."""

    def __init__(self, min: float = -1.0, max: float = 1.0):
        self.min, self.max = float(min), float(max)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        import torch

        with torch.no_grad():
            for p in pl_module.parameters():
                if p.dim() > 1:
                    p.clamp_(self.min, self.max)

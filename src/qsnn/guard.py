"""Stop a job whose training loss or gradients stop being finite, before it saves NaN weights.

Lightning's EarlyStopping(check_finite=True) only looks at the monitored *validation* metric,
once per epoch; by then a NaN step has already been taken and checkpointed as ``last.ckpt``.
This callback checks every step and raises ``Diverged``: the runner marks the job failed
with the reason (summary.json and the W&B summary), the checkpoints written before the
divergence stay as they were, and a multirun goes on with its next job.
"""
from __future__ import annotations

import lightning as L
import torch


class Diverged(RuntimeError):
    """Training produced a non-finite loss or gradient."""


class DivergenceGuard(L.Callback):
    def __init__(self, check_grads: bool = True):
        self.check_grads = check_grads

    def _where(self, trainer) -> str:
        return f"epoch {trainer.current_epoch}, step {trainer.global_step}"

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        # after backward, before the weights change: a NaN gradient never reaches the weights
        if not self.check_grads:
            return
        grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
        if grads:
            norm = torch.nn.utils.get_total_norm(grads)
            if not torch.isfinite(norm):
                raise Diverged(f"gradient norm is {float(norm)} at {self._where(trainer)}: training diverged "
                               f"(lower optim.lr, or clip with trainer.gradient_clip_val)")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is not None and not torch.isfinite(loss).all():
            raise Diverged(f"training loss is {float(loss)} at {self._where(trainer)}: training diverged "
                           f"(lower optim.lr, or clip with trainer.gradient_clip_val)")


class DeadNetworkMonitor(L.Callback):
    """Warn (console and ``summary.json`` ``warnings``) when a run that does not diverge still learns
    nothing: e.g. ``optim.lr=1e9`` ends ``ok`` at chance accuracy.

    Two signs, checked at the end of each training epoch:
    - the output layer never spiked (rate 0) or spiked at every step (rate 1): its spike counts
      carry no class information;
    - the train accuracy is not distinguishable from chance 1/num_classes (one-sided binomial
      test, scipy, at level ``alpha``; chance assumes roughly balanced classes, as our
      stratified splits are).
    A sign is reported once, when it has held for ``patience`` epochs in a row, or at the end of a
    shorter run if it held on all of its epochs, 2 at least (one epoch at chance is how every run
    starts; a 1-epoch run is never judged). ``warnings`` holds the messages; the runner
    copies them into the summary. A warning, not a failure: the run's files and status stay.
    """

    def __init__(self, patience: int = 3, alpha: float = 0.05):
        self.patience, self.alpha = int(patience), float(alpha)
        self.warnings: list[str] = []
        self.streak = {"output": 0, "chance": 0}
        self.detail = {"output": "", "chance": ""}
        self.epochs_seen, self._samples = 0, 0

    def on_train_epoch_start(self, trainer, pl_module):
        self._samples = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._samples += int(len(batch[1]))

    def on_train_epoch_end(self, trainer, pl_module):
        from scipy.stats import binomtest

        m = trainer.callback_metrics
        rates = sorted((int(k.rsplit("layer", 1)[1]), float(v)) for k, v in m.items()
                       if k.startswith("train/rate_layer"))
        epoch, self.epochs_seen = trainer.current_epoch, self.epochs_seen + 1
        out = rates[-1][1] if rates else None
        dead = out is not None and (out <= 0.0 or out >= 1.0)
        self._count("output", dead, f"the output layer {'never spiked' if out == 0 else 'spiked at every step'} "
                                    f"(rate {out:g})" if dead else "")
        acc, n, classes = m.get("train/acc"), self._samples, int(getattr(pl_module.hparams, "num_classes", 0) or 0)
        chance = False
        if acc is not None and n > 0 and classes >= 2:
            k = int(round(float(acc) * n))
            p = binomtest(k, n, 1.0 / classes, alternative="greater").pvalue
            chance = p >= self.alpha
            detail = (f"train accuracy {float(acc):.3f} is not distinguishable from chance 1/{classes} "
                      f"(binomial test, n={n}, p={p:.2g})")
        self._count("chance", chance, detail if chance else "")
        for sign in ("output", "chance"):
            if self.streak[sign] == self.patience:
                self._warn(sign, epoch)

    def _count(self, sign: str, holds: bool, detail: str) -> None:
        self.streak[sign] = self.streak[sign] + 1 if holds else 0
        if holds:
            self.detail[sign] = detail

    def _warn(self, sign: str, epoch: int) -> None:
        import logging

        n = self.streak[sign]
        msg = (f"dead network? {self.detail[sign]} for {n} epoch{'s' if n > 1 else ''} up to epoch {epoch}: "
               "check optim.lr (too large?), model.threshold and the surrogate")
        if msg not in self.warnings:
            self.warnings.append(msg)
            logging.getLogger("qsnn").warning(msg)

    def on_fit_end(self, trainer, pl_module):
        need = max(min(self.patience, self.epochs_seen), 2)  # one epoch alone says little
        for sign in ("output", "chance"):
            if need <= self.streak[sign] < self.patience:
                self._warn(sign, trainer.current_epoch - 1)

    def state_dict(self):
        return {"warnings": list(self.warnings), "streak": dict(self.streak), "epochs_seen": self.epochs_seen}

    def load_state_dict(self, state):
        self.warnings = list(state.get("warnings", []))
        self.streak.update(state.get("streak", {}))
        self.epochs_seen = int(state.get("epochs_seen", 0))


def dead_network_warnings(trainer) -> list[str]:
    """The warnings of the trainer's DeadNetworkMonitor (for the run summary)."""
    return [w for cb in trainer.callbacks if isinstance(cb, DeadNetworkMonitor) for w in cb.warnings]

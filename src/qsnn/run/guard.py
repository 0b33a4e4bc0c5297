"""Two guards every training loop runs: divergence (stop before a NaN step is taken or saved) and
a dead network (warn when a run that does not diverge still learns nothing).

Each is a Lightning callback whose hooks only gather what the trainer knows and call plain
methods (``check_grad_norm``/``check_loss``, ``epoch_end``/``fit_end``); the stacked loop
(``qsnn.stacked.loop``) calls the same methods per seed, so both loops judge a run alike.

Lightning's EarlyStopping(check_finite=True) only looks at the monitored *validation* metric,
once per epoch; by then a NaN step has already been taken and checkpointed as ``last.ckpt``.
``DivergenceGuard`` checks every step and raises ``Diverged``: the runner marks the job failed
with the reason (summary.json and the W&B summary), the checkpoints written before the
divergence stay as they were, and a multirun goes on with its next job.
"""
from __future__ import annotations

import logging

import lightning as L
import torch

from qsnn.errors import Diverged

log = logging.getLogger("qsnn")
HINT = "training diverged (lower optim.lr, or clip with trainer.gradient_clip_val)"


class DivergenceGuard(L.Callback):
    def __init__(self, check_grads: bool = True):
        self.check_grads = check_grads

    def check_grad_norm(self, norm: torch.Tensor, where: str) -> None:
        """Raise Diverged for a non-finite total gradient norm (after backward, before the step)."""
        if self.check_grads and not torch.isfinite(norm):
            raise Diverged(f"gradient norm is {float(norm)} at {where}: {HINT}")

    def check_loss(self, loss: torch.Tensor, where: str) -> None:
        if not torch.isfinite(loss).all():
            raise Diverged(f"training loss is {float(loss)} at {where}: {HINT}")

    @staticmethod
    def where(epoch: int, step: int) -> str:
        return f"epoch {epoch}, step {step}"

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        # after backward, before the weights change: a NaN gradient never reaches the weights
        grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
        if grads and self.check_grads:
            self.check_grad_norm(torch.nn.utils.get_total_norm(grads), self.where(trainer.current_epoch,
                                                                                  trainer.global_step))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is not None:
            self.check_loss(loss, self.where(trainer.current_epoch, trainer.global_step))


class DeadNetworkMonitor(L.Callback):
    """Warn (console and ``summary.json`` ``warnings``) when a run that does not diverge still learns
    nothing: e.g. ``optim.lr=1e9`` ends ``ok`` at chance accuracy.

    Three signs, checked at the end of each training epoch:
    - the output layer never spiked (rate 0) or spiked at every step (rate 1): its spike counts
      carry no class information;
    - the train accuracy is not distinguishable from chance 1/num_classes (``at_chance``: one-sided
      binomial test, scipy, at level ``alpha``; chance assumes roughly balanced classes, as our
      stratified splits are);
    - the training loss is exactly 0: no gradient flows at all.
    A sign is reported once, when it has held for ``patience`` epochs in a row, or at the end of a
    shorter run if it held on all of its epochs, 2 at least for the first two (one epoch at chance
    is how every run starts), 1 for a zero loss. After the test, ``test_end`` adds a warning when
    the test accuracy is at chance, whatever the run's length. ``warnings`` holds the messages; the
    runner copies them into the summary. A warning, not a failure: the run's files and status stay.
    """

    SIGNS = ("output", "chance", "zero_loss")
    MIN_EPOCHS = {"output": 2, "chance": 2, "zero_loss": 1}
    HINT = "check optim.lr (too large?), model.threshold and the surrogate"
    HINTS = {"zero_loss": "no gradient flows: check the loss (mse_count's targets int(T * rate), T = data.num_steps)"}

    def __init__(self, patience: int = 3, alpha: float = 0.05):
        self.patience, self.alpha = int(patience), float(alpha)
        self.warnings: list[str] = []
        self.streak = {s: 0 for s in self.SIGNS}
        self.detail = {s: "" for s in self.SIGNS}
        self.epochs_seen, self._samples, self.test_samples = 0, 0, 0

    # -- what both loops call -------------------------------------------------------------------
    def epoch_end(self, epoch: int, metrics: dict, samples: int, num_classes: int) -> None:
        """One training epoch's logged ``metrics`` (``train/acc``, ``train/rate_layer<i>``) over
        ``samples`` training samples."""
        rates = sorted((int(k.rsplit("layer", 1)[1]), float(v)) for k, v in metrics.items()
                       if k.startswith("train/rate_layer"))
        self.epochs_seen += 1
        out = rates[-1][1] if rates else None
        dead = out is not None and (out <= 0.0 or out >= 1.0)
        self._count("output", dead, f"the output layer {'never spiked' if out == 0 else 'spiked at every step'} "
                                    f"(rate {out:g})" if dead else "")
        self._count("chance", *at_chance(metrics.get("train/acc"), samples, num_classes, self.alpha, "train"))
        loss = metrics.get("train/loss")
        self._count("zero_loss", loss is not None and float(loss) == 0.0, "the training loss is exactly 0")
        for sign in self.SIGNS:
            if self.streak[sign] == self.patience:
                self._warn(sign, epoch)

    def fit_end(self, last_epoch: int) -> None:
        for sign in self.SIGNS:  # one epoch at chance says little; one with a zero loss says enough
            if max(min(self.patience, self.epochs_seen), self.MIN_EPOCHS[sign]) <= self.streak[sign] < self.patience:
                self._warn(sign, last_epoch)

    def test_end(self, metrics: dict, num_classes: int) -> str | None:
        """After the test (``test_samples`` counted by the hooks): a warning when ``test/acc`` is not
        distinguishable from chance; the runner and the stacked seed both call this."""
        holds, detail = at_chance(metrics.get("test/acc"), self.test_samples, num_classes, self.alpha, "test")
        if not holds:
            return None
        msg = f"dead network? {detail}: {self.HINT}"
        log.warning(msg)
        return msg

    def _count(self, sign: str, holds: bool, detail: str) -> None:
        self.streak[sign] = self.streak[sign] + 1 if holds else 0
        if holds:
            self.detail[sign] = detail

    def _warn(self, sign: str, epoch: int) -> None:
        n = self.streak[sign]
        msg = (f"dead network? {self.detail[sign]} for {n} epoch{'s' if n > 1 else ''} up to epoch {epoch}: "
               f"{self.HINTS.get(sign, self.HINT)}")
        if msg not in self.warnings:
            self.warnings.append(msg)
            log.warning(msg)

    # -- Lightning hooks ------------------------------------------------------------------------
    def on_train_epoch_start(self, trainer, pl_module):
        self._samples = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._samples += int(len(batch[1]))

    def on_train_epoch_end(self, trainer, pl_module):
        self.epoch_end(trainer.current_epoch, trainer.callback_metrics, self._samples,
                       int(getattr(pl_module.hparams, "num_classes", 0) or 0))

    def on_fit_end(self, trainer, pl_module):
        self.fit_end(trainer.current_epoch - 1)

    def on_test_epoch_start(self, trainer, pl_module):
        self.test_samples = 0

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self.test_samples += int(len(batch[1]))

    def state_dict(self):
        return {"warnings": list(self.warnings), "streak": dict(self.streak), "epochs_seen": self.epochs_seen}

    def load_state_dict(self, state):
        self.warnings = list(state.get("warnings", []))
        self.streak.update(state.get("streak", {}))
        self.epochs_seen = int(state.get("epochs_seen", 0))


def at_chance(acc, n: int, classes: int, alpha: float, split: str) -> tuple[bool, str]:
    """Whether accuracy ``acc`` over ``n`` samples is not distinguishable from chance 1/``classes``
    (one-sided binomial test at level ``alpha``), and the sentence saying so."""
    from scipy.stats import binomtest

    if acc is None or n <= 0 or classes < 2:
        return False, ""
    p = binomtest(int(round(float(acc) * n)), n, 1.0 / classes, alternative="greater").pvalue
    return p >= alpha, (f"{split} accuracy {float(acc):.3f} is not distinguishable from chance "
                        f"1/{classes} (binomial test, n={n}, p={p:.2g})")


def dead_network_monitor(trainer) -> DeadNetworkMonitor | None:
    return next((cb for cb in trainer.callbacks if isinstance(cb, DeadNetworkMonitor)), None)


def dead_network_warnings(trainer) -> list[str]:
    """The warnings of the trainer's DeadNetworkMonitor (for the run summary)."""
    monitor = dead_network_monitor(trainer)
    return list(monitor.warnings) if monitor is not None else []

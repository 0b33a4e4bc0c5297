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

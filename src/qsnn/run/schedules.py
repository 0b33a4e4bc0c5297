"""LR schedules, all stepped every optimizer step (Lightning ``interval="step"``).

Thin factories over torch's schedulers: each takes the optimizer plus the run's
``steps_per_epoch``/``total_steps`` (filled in by the LightningModule) so periods can be
given in steps, epochs or as a fraction of the run's total steps (``*_frac``: the same schedule
shape at any run length; studies use these). ``warmup_steps`` > 0 puts a linear warm-up in front of any of them.

- constant        : the LR never changes.
- cosine          : one cosine anneal over the whole run (CosineAnnealingLR, T_max=total).
- cosine_periodic : the QSNN paper's recipe: CosineAnnealingLR(T_max) stepped every batch for
                    the whole run, so the LR falls to eta_min then rises again (no jump).
- cosine_restart  : SGDR warm restarts (CosineAnnealingWarmRestarts(T_0, T_mult)): after each
                    period the LR jumps back to its maximum; periods grow by T_mult.
- step            : multiply by gamma every ``step_epochs`` epochs.
- onecycle        : OneCycleLR over the whole run.
"""
from __future__ import annotations

from torch.optim import Optimizer
from torch.optim import lr_scheduler as S


def _steps(steps: int | None, epochs: float | None, steps_per_epoch: int, name: str,
           frac: float | None = None, total_steps: int = 1) -> int:
    """The period in steps: ``name`` (steps) first, then ``{name}_frac`` x total steps, then epochs."""
    if steps is not None:
        n = int(steps)
    elif frac is not None:
        n = int(round(float(frac) * int(total_steps)))
    elif epochs is not None:
        n = int(round(float(epochs) * steps_per_epoch))
    else:
        raise ValueError(f"sched: give {name} in steps, {name}_frac or {name}_epochs")
    return max(n, 1)


def _with_warmup(optimizer: Optimizer, sched: S.LRScheduler, warmup_steps: int) -> S.LRScheduler:
    if warmup_steps <= 0:
        return sched
    warm = S.LinearLR(optimizer, start_factor=1.0 / (warmup_steps + 1), end_factor=1.0, total_iters=warmup_steps)
    return S.SequentialLR(optimizer, [warm, sched], milestones=[warmup_steps])


def constant(optimizer, steps_per_epoch=1, total_steps=1, warmup_steps=0):
    return _with_warmup(optimizer, S.LambdaLR(optimizer, lambda _: 1.0), warmup_steps)


def cosine(optimizer, steps_per_epoch=1, total_steps=1, eta_min=0.0, warmup_steps=0):
    t_max = max(int(total_steps) - warmup_steps, 1)
    return _with_warmup(optimizer, S.CosineAnnealingLR(optimizer, T_max=t_max, eta_min=eta_min), warmup_steps)


def cosine_periodic(optimizer, steps_per_epoch=1, total_steps=1, T_max=None, T_max_epochs=None,
                    eta_min=0.0, warmup_steps=0, T_max_frac=None):
    t_max = _steps(T_max, T_max_epochs, steps_per_epoch, "T_max", T_max_frac, total_steps)
    return _with_warmup(optimizer, S.CosineAnnealingLR(optimizer, T_max=t_max, eta_min=eta_min), warmup_steps)


def cosine_restart(optimizer, steps_per_epoch=1, total_steps=1, T_0=None, T_0_epochs=None, T_mult=1,
                   eta_min=0.0, warmup_steps=0, T_0_frac=None):
    t0 = _steps(T_0, T_0_epochs, steps_per_epoch, "T_0", T_0_frac, total_steps)
    sched = S.CosineAnnealingWarmRestarts(optimizer, T_0=t0, T_mult=int(T_mult), eta_min=eta_min)
    return _with_warmup(optimizer, sched, warmup_steps)


def step(optimizer, steps_per_epoch=1, total_steps=1, step_size=None, step_epochs=None, gamma=0.1,
         warmup_steps=0):
    size = _steps(step_size, step_epochs, steps_per_epoch, "step_size")
    return _with_warmup(optimizer, S.StepLR(optimizer, step_size=size, gamma=gamma), warmup_steps)


def onecycle(optimizer, steps_per_epoch=1, total_steps=1, pct_start=0.3, div_factor=25.0,
             final_div_factor=1e4, warmup_steps=0):
    max_lr = [g["lr"] for g in optimizer.param_groups]
    sched = S.OneCycleLR(optimizer, max_lr=max_lr, total_steps=max(int(total_steps), 2), pct_start=pct_start,
                         div_factor=div_factor, final_div_factor=final_div_factor)
    return sched  # OneCycle has its own warm-up phase

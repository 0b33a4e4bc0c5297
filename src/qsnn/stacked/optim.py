"""Each member of a stacked model keeps the single run's own optimizer and LR schedule.

Seed s's slice of every stacked parameter is a contiguous block (``net.py``: ``p.view(S, -1)[s]``).
A view of it taken from ``p.detach()`` is a leaf that shares the stacked storage, so a plain
``torch.optim`` optimizer built on seed s's views (by that seed's ``optimizer_factory``: its own
``optim.lr``, betas, weight decay) steps exactly that slice in place, with the single run's own
state tensors, and seed s's ``scheduler_factory`` drives its LR (its own ``sched.*``). So the members
of one stacked group may differ in their optimizer and schedule hyperparameters (the launcher
stacks the trials of a tuning phase, not only seeds), and each member's update is the single run's
update, op for op. Cost: one optimizer step per member instead of one over the stacked tensors
(a few small per-tensor kernels each; measured in ``python -m qsnn.bench --stacked-seeds``).
"""
from __future__ import annotations

from typing import Any

import torch


class MemberOptimizers:
    """One optimizer (+ LR scheduler) per member, over that member's views of the stacked parameters."""

    def __init__(self, params: list[torch.nn.Parameter], shapes: list[torch.Size], modules: list,
                 steps_per_epoch: int, total_steps: int):
        self.params, self.S = params, len(modules)
        for p, shape in zip(params, shapes):
            if p.numel() != self.S * shape.numel():
                raise TypeError(f"stacked parameter of shape {tuple(p.shape)} has no per-seed slice {tuple(shape)}")
        self.views = [[p.detach().view(self.S, -1)[s].view(shape) for p, shape in zip(params, shapes)]
                      for s in range(self.S)]
        self.opts = [m.optimizer_factory(params=v) for m, v in zip(modules, self.views)]
        self.scheds = [None if m.scheduler_factory is None else
                       m.scheduler_factory(o, steps_per_epoch=steps_per_epoch, total_steps=total_steps)
                       for m, o in zip(modules, self.opts)]
        self.name = f"lr-{type(self.opts[0]).__name__}"  # LearningRateMonitor's key

    def lr(self, s: int) -> float:
        return float(self.opts[s].param_groups[0]["lr"])

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self, members: list[int]) -> None:
        """Optimizer step, then scheduler step, of each member in ``members`` (as Lightning orders them)."""
        for s in members:
            for p, v in zip(self.params, self.views[s]):
                v.grad = None if p.grad is None else p.grad.view(self.S, -1)[s].view_as(v)
            self.opts[s].step()
            if self.scheds[s] is not None:
                self.scheds[s].step()
            for v in self.views[s]:
                v.grad = None

    def state(self, s: int) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """Member s's optimizer and scheduler state dicts: the single run's checkpoint entries."""
        sched = self.scheds[s]
        return self.opts[s].state_dict(), (sched.state_dict() if sched is not None else None)

    def load(self, s: int, opt_state: dict[str, Any], sched_state: dict[str, Any] | None) -> None:
        self.opts[s].load_state_dict(opt_state)
        if self.scheds[s] is not None and sched_state:
            self.scheds[s].load_state_dict(sched_state)

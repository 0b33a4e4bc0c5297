"""The optimizer and LR schedule of a stacked model: each member's update is its single run's.

Seed s's slice of every stacked parameter is a contiguous block (``net.py``: ``p.view(S, -1)[s]``).

- Members with the same ``optim`` and ``sched`` config (seeds of one setting): ONE optimizer over
  the stacked tensors. The optimizers the stacked loop accepts are elementwise
  (``support.OPTIMIZERS``), so their state and update for a stacked tensor are the per-seed ones
  side by side; one scheduler drives the shared LR. Checkpoints hold each seed's slice of the
  state in the single run's format.
- Members that differ in optimizer or schedule values (a study's tuning trials: ``optim.lr``,
  ``sched.T_0_frac``, ...): one optimizer per member, built by that member's
  ``optimizer_factory`` on views of its slices (a view of ``p.detach()`` is a leaf that shares the
  stacked storage, so the optimizer steps that slice in place), and that member's scheduler on it.
  Costs one small optimizer step per member instead of one: on randman with 5 members (4 epochs,
  1 thread) the fit took 6.7-7.1 s instead of 6.0-6.4 s shared, so the shared form stays where it
  applies.
"""
from __future__ import annotations

import math
from typing import Any

import torch


class MemberOptimizers:
    """The members' optimizers and schedulers (one shared pair, or one pair per member)."""

    def __init__(self, params: list[torch.nn.Parameter], shapes: list[torch.Size], modules: list, shared: bool,
                 steps_per_epoch: int, total_steps: int):
        self.params, self.shapes, self.S, self.shared = params, shapes, len(modules), shared
        for p, shape in zip(params, shapes):
            if p.numel() != self.S * shape.numel():
                raise TypeError(f"stacked parameter of shape {tuple(p.shape)} has no per-seed slice {tuple(shape)}")
        if shared:
            self.views = [params]
        else:
            self.views = [[p.detach().view(self.S, -1)[s].view(shape) for p, shape in zip(params, shapes)]
                          for s in range(self.S)]
        mods = modules[:1] if shared else modules
        self.opts = [m.optimizer_factory(params=v) for m, v in zip(mods, self.views)]
        self.scheds = [None if m.scheduler_factory is None else
                       m.scheduler_factory(o, steps_per_epoch=steps_per_epoch, total_steps=total_steps)
                       for m, o in zip(mods, self.opts)]
        self.name = f"lr-{type(self.opts[0]).__name__}"  # LearningRateMonitor's key

    def _k(self, s: int) -> int:
        return 0 if self.shared else s

    def lr(self, s: int) -> float:
        return float(self.opts[self._k(s)].param_groups[0]["lr"])

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self, members: list[int]) -> None:
        """Optimizer step, then scheduler step (Lightning's order), of the members still training."""
        if self.shared:
            members = [0]
        for s in members:
            if not self.shared:
                for p, v in zip(self.params, self.views[s]):
                    v.grad = None if p.grad is None else p.grad.view(self.S, -1)[s].view_as(v)
            self.opts[s].step()
            if self.scheds[s] is not None:
                self.scheds[s].step()

    def state(self, s: int) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """Member s's optimizer and scheduler state dicts, as its single run's checkpoint holds them."""
        sched = self.scheds[self._k(s)]
        sched_state = sched.state_dict() if sched is not None else None
        if not self.shared:
            return self.opts[s].state_dict(), sched_state
        sd = self.opts[0].state_dict()
        state = {}
        for i, st in sd["state"].items():
            n = math.prod(self.shapes[i])
            state[i] = {k: v.reshape(self.S, -1)[s].clone().view(self.shapes[i])
                        if torch.is_tensor(v) and v.dim() > 0 and v.numel() == self.S * n else v
                        for k, v in st.items()}
        return {"state": state, "param_groups": sd["param_groups"]}, sched_state

    def load(self, states: list[tuple[dict[str, Any], dict[str, Any] | None]]) -> None:
        """Inverse of ``state`` for all members at once (resume)."""
        if not self.shared:
            for s, (opt_state, sched_state) in enumerate(states):
                self.opts[s].load_state_dict(opt_state)
                if self.scheds[s] is not None and sched_state:
                    self.scheds[s].load_state_dict(sched_state)
            return
        opts = [o for o, _ in states]
        merged = {i: {k: torch.cat([o["state"][i][k].reshape(-1) for o in opts])
                      if torch.is_tensor(v) and v.dim() > 0 else v for k, v in st.items()}
                  for i, st in opts[0]["state"].items()}
        opt = self.opts[0]
        opt.load_state_dict({"state": merged, "param_groups": opts[0]["param_groups"]})
        for p in self.params:  # flat per seed -> the stacked layout
            for k, v in opt.state[p].items():
                if torch.is_tensor(v) and v.dim() > 0:
                    opt.state[p][k] = v.view_as(p)
        if self.scheds[0] is not None and states[0][1]:
            self.scheds[0].load_state_dict(states[0][1])

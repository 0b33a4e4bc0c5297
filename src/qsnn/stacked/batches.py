"""What the stacked loop takes over from a Lightning Trainer's set-up and data side: the device,
dtype, threads and determinism of the run; how many batches an epoch has under ``limit_*``; each
seed's batches, drawn under that seed's RNG streams and encoded as Lightning would; and the
per-seed epoch mean of a value logged with a batch size."""
from __future__ import annotations

import os

import torch
from omegaconf import DictConfig

from qsnn.stacked.seeds import SeedRNG
from qsnn.stacked.support import PRECISIONS


def setup_runtime(cfg: DictConfig) -> tuple[torch.device, torch.dtype]:
    """Threads, determinism and dtype as the single run's Trainer sets them."""
    if cfg.get("torch_threads"):
        torch.set_num_threads(int(cfg.torch_threads))
    det = cfg.trainer.get("deterministic")
    if det:
        torch.use_deterministic_algorithms(True, warn_only=det == "warn")
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    dtype = getattr(torch, PRECISIONS[str(cfg.trainer.get("precision") or "32-true")])
    acc = str(cfg.trainer.get("accelerator", "cpu"))
    use_cuda = acc in ("gpu", "cuda") or (acc == "auto" and torch.cuda.is_available())
    return torch.device("cuda" if use_cuda else "cpu"), dtype


def n_batches(n: int, limit) -> int:
    """Batches of an epoch under Lightning's ``limit_*_batches`` (a count, or a fraction <= 1)."""
    if limit is None:
        return n
    return min(n, int(limit)) if isinstance(limit, int) or float(limit) > 1 else int(n * float(limit))


def epoch_iterators(loaders, rng: SeedRNG, epoch: int | None = None) -> list:
    """Each seed's iterator over its loader, started under its own RNG state; with ``epoch``, the
    sampler's epoch is set first (what Lightning does at each training epoch's start)."""
    its = []
    for s, dl in enumerate(loaders):
        if epoch is not None:
            for sampler in (getattr(dl, "sampler", None), getattr(dl, "batch_sampler", None)):
                if sampler is not None and hasattr(sampler, "set_epoch"):
                    sampler.set_epoch(epoch)
        with rng.use(s):
            its.append(iter(dl))
    return its


def next_batches(jobs, its, rng: SeedRNG, device, dtype):
    """Each seed's next batch, encoded as Lightning does it (precision cast, transfer, encoding)."""
    xs, ys = [], []
    for s, (job, it) in enumerate(zip(jobs, its)):
        with rng.use(s):
            x, y = next(it)
            x = x.to(dtype) if x.is_floating_point() else x
            x, y = job.dm.on_after_batch_transfer((x.to(device), y.to(device)), 0)
        xs.append(x)
        ys.append(y)
    return xs, ys


class EpochMeans:
    """Per seed: Lightning's on_epoch mean of a value logged with a batch size (the rates); ``n``
    is the number of samples seen."""

    def __init__(self):
        self.sums: list[torch.Tensor] | None = None
        self.n = 0

    def add(self, rates: list[torch.Tensor], bs: int) -> None:
        vals = [r * bs for r in rates]
        self.sums = vals if self.sums is None else [a + v for a, v in zip(self.sums, vals)]
        self.n += bs

    def get(self, s: int) -> list[float]:
        return [float(v[s] / self.n) for v in self.sums]

"""Shared machinery for small datasets held as tensors in memory.

Batches are drawn by index with one tensor gather per batch (a BatchSampler used as the
sampler, ``batch_size=None``): no per-sample Python collate. Encoding to [T, B, ...] runs
once per batch, on the device, in ``on_after_batch_transfer``.
"""
from __future__ import annotations

import warnings
from typing import Sequence

import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler, TensorDataset

from qsnn.data.base import SplitsDataModule


# Lightning's advice on a machine with many cores ("... does not have many workers which may be a
# bottleneck ..."): in-memory batches are one tensor gather each, so workers would only add processes
FEW_WORKERS = r"The '\w+_dataloader' does not have many workers which may be a bottleneck"


class EpochShuffledBatches(BatchSampler):
    """Shuffled batches whose order depends only on (seed, epoch): Lightning calls ``set_epoch``
    at each epoch start, so a run resumed at epoch k sees the batches an uninterrupted run saw."""

    def __init__(self, ds, batch_size: int, seed: int):
        self.seed, self.generator = seed, torch.Generator().manual_seed(seed)
        super().__init__(RandomSampler(ds, generator=self.generator), batch_size, drop_last=False)

    def set_epoch(self, epoch: int) -> None:
        self.generator.manual_seed(self.seed + epoch)


class InMemoryDataModule(SplitsDataModule):
    """Subclasses set ``input_shape``/``num_classes`` in ``__init__`` and implement ``load()``
    returning {"train": (x, y), "val": (x, y), "test": (x, y)} as tensors."""

    input_shape: Sequence[int]
    num_classes: int

    def __init__(self, batch_size: int = 64, num_steps: int = 10, encoding: str = "direct",
                 seed: int = 0, eval_batch_size: int | None = None):
        super().__init__()
        self.batch_size, self.num_steps, self.encoding = int(batch_size), int(num_steps), encoding
        self.eval_batch_size = int(eval_batch_size or max(batch_size, 256))
        self.seed = int(seed)
        self.splits: dict[str, TensorDataset] = {}

    @classmethod
    def sample_shape(cls, data: dict) -> tuple[int, ...] | None:
        """The shape of one sample this module gives the model under the ``data`` config (keys
        without the ``data.`` prefix), known before anything is loaded; ``qsnn.run.validate``
        asks every data module for it to check the model against the data. None: not known."""
        return None

    def load(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        raise NotImplementedError

    def prepare_data(self) -> None:
        # load and split now (the runner calls this before building the model): a bad file or
        # split is one error line before anything trains; setup() reuses the splits
        self.setup()

    def setup(self, stage: str | None = None) -> None:
        if not self.splits:
            self.splits = {k: TensorDataset(x, y) for k, (x, y) in self.load().items()}

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        warnings.filterwarnings("ignore", message=FEW_WORKERS)  # before Lightning checks this loader
        ds = self.splits[split]
        if self.trainer is not None and self.trainer.overfit_batches:
            # debug=overfit: Lightning swaps any other sampler for a SequentialSampler, and ours (a
            # BatchSampler with batch_size=None) would then yield single samples: a plain, unshuffled loader
            return DataLoader(ds, batch_size=self.batch_size if shuffle else self.eval_batch_size, num_workers=0)
        if shuffle:
            sampler = EpochShuffledBatches(ds, self.batch_size, self.seed)
        else:
            sampler = BatchSampler(SequentialSampler(ds), self.eval_batch_size, drop_last=False)
        return DataLoader(ds, sampler=sampler, batch_size=None, num_workers=0)

    def num_steps_of(self, x: torch.Tensor) -> int:
        return self.num_steps

"""What every qsnn data module shares: the three splits' loaders from one ``_loader(split,
shuffle)``, and the encoding of each batch to [T, B, ...] on the device after transfer."""
from __future__ import annotations

import lightning as L
import torch

from qsnn.data.encoding import encode


class SplitsDataModule(L.LightningDataModule):
    """Subclasses set ``encoding`` and implement ``_loader(split, shuffle)`` and ``num_steps_of``."""

    encoding: str

    def _loader(self, split: str, shuffle: bool):
        raise NotImplementedError

    def num_steps_of(self, x: torch.Tensor) -> int:
        """T of the encoded batch ``x`` (a static batch is encoded to this many steps)."""
        raise NotImplementedError

    def train_dataloader(self):
        return self._loader("train", shuffle=True)

    def val_dataloader(self):
        return self._loader("val", shuffle=False)

    def test_dataloader(self):
        return self._loader("test", shuffle=False)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        x, y = batch
        return encode(x, self.encoding, self.num_steps_of(x)), y

"""scikit-learn's 8x8 handwritten digits (1797 images, ships inside scikit-learn: no download).

Stratified train/val/test split by seed; pixels scaled to [0, 1]; shape [N, 1, 8, 8].
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from qsnn.data.inmemory import InMemoryDataModule
from qsnn.errors import ConfigError


def stratified_split(y: np.ndarray, val_fraction: float, test_fraction: float, seed: int, hint: str = ""):
    """Indices (train, val, test), stratified by label, reproducible by seed. Fractions that leave
    a split without a sample of every class are a ConfigError naming them (``hint``: what else to
    change, e.g. the number of samples)."""
    idx = np.arange(len(y))
    try:
        rest, test = train_test_split(idx, test_size=test_fraction, stratify=y, random_state=seed)
        train, val = train_test_split(rest, test_size=val_fraction / (1 - test_fraction), stratify=y[rest],
                                      random_state=seed)
    except ValueError as e:  # sklearn: a split smaller than the number of classes, a class of one sample
        raise ConfigError(f"data.val_fraction={val_fraction!r}, data.test_fraction={test_fraction!r} are not "
                          f"allowed for {len(y)} samples of {len(np.unique(y))} classes: every split needs "
                          f"each class{hint} (sklearn: {str(e).splitlines()[0]})") from None
    return train, val, test


class DigitsDataModule(InMemoryDataModule):
    @classmethod
    def sample_shape(cls, data: dict) -> tuple[int, ...]:
        return (1, 8, 8)

    def __init__(self, val_fraction: float = 0.15, test_fraction: float = 0.2, **kw):
        super().__init__(**kw)
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.input_shape, self.num_classes = self.sample_shape({}), 10

    def load(self):
        d = load_digits()
        x = torch.tensor(d.images / 16.0, dtype=torch.float32).unsqueeze(1)
        y = torch.tensor(d.target, dtype=torch.long)
        parts = stratified_split(d.target, self.val_fraction, self.test_fraction, self.seed)
        return {k: (x[i], y[i]) for k, i in zip(("train", "val", "test"), parts)}

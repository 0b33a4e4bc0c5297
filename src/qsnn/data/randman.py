"""Random-manifold spike-timing task (after Zenke & Vogels 2021, "The remarkable robustness of
surrogate gradient learning"; written from the paper's description, not from fzenke/randman).

Each class is a smooth random manifold of intrinsic dimension ``dim`` embedded in ``units``
input units. Coordinate u of class c at the intrinsic point x in [0, 1]^dim is

    prod_j f_{c,u,j}(x_j),   f(x) = sum_k a_k (k+1)^-alpha sin(2 pi (k x b_k + c_k)),

with a, b, c ~ U[0, 1) and k = 0, 1, ... while (k+1)^-alpha >= 1e-3 (smaller terms are below
what a spike time can resolve). Points are drawn uniformly per class, each coordinate is
min-max normalised **per class** over that class's samples, and becomes one spike at step
floor(value * T) (clamped to T-1). Per-class normalisation makes every class span the whole
[0, T) window on every unit, so no class is told apart by when a unit can fire at all, only
by the joint timing pattern. ``alpha`` sets smoothness (larger: smoother), ``dim`` sets how
much each class spreads (larger: harder).

The task is fixed by ``manifold_seed`` (one benchmark across a study); the job ``seed`` only
picks the stratified train/val/test split and the batch order.
"""
from __future__ import annotations

import functools

import numpy as np
import torch

from qsnn.data.digits import stratified_split
from qsnn.data.inmemory import InMemoryDataModule

CUTOFF = 1e-3


def _random_function_params(rng: np.random.Generator, shape: tuple[int, ...], alpha: float):
    """a, b, c of shape [*shape, K] and the decay weights (k+1)^-alpha of shape [K]."""
    k = np.arange(int(np.floor(CUTOFF ** (-1.0 / alpha) + 1e-9)))  # all k with (k+1)^-alpha >= 1e-3
    a, b, c = (rng.random((*shape, len(k))) for _ in range(3))
    return a, b, c, k, (k + 1.0) ** -alpha


def _manifold(rng: np.random.Generator, units: int, dim: int, alpha: float, n: int) -> np.ndarray:
    """n points on one class's manifold, [n, units], min-max normalised per unit to [0, 1]."""
    a, b, c, k, w = _random_function_params(rng, (units, dim), alpha)
    x = rng.random((n, dim))
    # phase[n, units, dim, K] = k * x_j * b + c
    phase = k * b * x[:, None, :, None] + c
    f = np.einsum("udk,nudk->nud", a * w, np.sin(2 * np.pi * phase))
    y = f.prod(axis=2)
    lo, hi = y.min(axis=0), y.max(axis=0)
    return (y - lo) / np.where(hi > lo, hi - lo, 1.0)


@functools.cache
def make_randman(classes: int = 10, units: int = 20, dim: int = 1, alpha: float = 2.0, num_steps: int = 50,
                 samples_per_class: int = 500, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Spike rasters [N, T, units] (float32, one spike per unit) and labels [N] (int64), N =
    classes * samples_per_class, classes in blocks. Deterministic in all arguments and cached;
    the arrays are read-only because every caller shares them."""
    if min(classes, units, dim, num_steps, samples_per_class) < 1 or alpha <= 0:
        raise ValueError("randman: classes, units, dim, num_steps, samples_per_class must be >= 1 and alpha > 0")
    rng = np.random.default_rng(seed)
    n = samples_per_class
    values = np.concatenate([_manifold(rng, units, dim, alpha, n) for _ in range(classes)])
    times = np.minimum(np.floor(values * num_steps).astype(np.int64), num_steps - 1)
    spikes = np.zeros((classes * n, num_steps, units), dtype=np.float32)
    np.put_along_axis(spikes, times[:, None, :], 1.0, axis=1)
    labels = np.repeat(np.arange(classes, dtype=np.int64), n)
    spikes.flags.writeable = labels.flags.writeable = False
    return spikes, labels


class RandmanDataModule(InMemoryDataModule):
    """Batches are spike rasters [B, T, units]; ``encoding: none`` turns them into [T, B, units]."""

    @classmethod
    def sample_shape(cls, data: dict) -> tuple[int, ...]:
        return (int(data["units"]),)

    def __init__(self, classes: int = 10, units: int = 20, dim: int = 1, alpha: float = 2.0,
                 samples_per_class: int = 500, manifold_seed: int = 0, val_fraction: float = 0.15,
                 test_fraction: float = 0.2, **kw):
        super().__init__(**kw)
        if self.encoding != "none":
            raise ValueError(f"data.encoding={self.encoding!r} is not allowed for randman: the samples are "
                             "already spike rasters, use none")
        self.knobs = dict(classes=int(classes), units=int(units), dim=int(dim), alpha=float(alpha),
                          num_steps=self.num_steps, samples_per_class=int(samples_per_class),
                          seed=int(manifold_seed))
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.input_shape, self.num_classes = self.sample_shape({"units": units}), int(classes)

    def load(self):
        spikes, labels = make_randman(**self.knobs)
        x, y = torch.tensor(spikes), torch.tensor(labels)  # copies: the cached arrays stay untouched
        parts = stratified_split(labels, self.val_fraction, self.test_fraction, self.seed,
                                 hint="; or raise data.samples_per_class")
        return {k: (x[i], y[i]) for k, i in zip(("train", "val", "test"), parts)}

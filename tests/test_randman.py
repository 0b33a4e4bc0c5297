"""data=randman: the generator's guarantees, the DataModule, and a tiny run through the real conf."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from sklearn.neighbors import KNeighborsClassifier

from conftest import TINY
from qsnn.data.randman import RandmanDataModule, make_randman
from qsnn.run.runner import train

SMALL = dict(classes=4, units=6, dim=1, alpha=2.0, num_steps=20, samples_per_class=30)


def test_deterministic_per_seed_and_different_across_seeds():
    a, la = make_randman(**SMALL, seed=3)
    make_randman.cache_clear()  # regenerate, not just hit the cache
    b, lb = make_randman(**SMALL, seed=3)
    assert a is not b and np.array_equal(a, b) and np.array_equal(la, lb)
    c, _ = make_randman(**SMALL, seed=4)
    assert not np.array_equal(a, c)
    assert make_randman(**SMALL, seed=3)[0] is b  # cached: the same arrays, read-only
    assert not b.flags.writeable


def test_one_spike_per_unit_within_window_and_balanced_classes():
    x, y = make_randman(**{**SMALL, "dim": 2}, seed=0)
    n, T, D = x.shape
    assert (n, T, D) == (4 * 30, 20, 6)
    assert set(np.unique(x)) == {0.0, 1.0}
    assert (x.sum(axis=1) == 1).all()  # exactly one spike per unit per sample, inside [0, T)
    assert np.bincount(y).tolist() == [30] * 4
    times = x.argmax(axis=1)  # [n, D]
    for c in range(4):  # per-class min-max normalisation: every class spans the whole window
        assert (times[y == c].min(axis=0) == 0).all() and (times[y == c].max(axis=0) == T - 1).all()


def _knn_accuracy(dim: int, seed: int) -> float:
    x, y = make_randman(classes=10, units=4, dim=dim, alpha=2.0, num_steps=50, samples_per_class=100, seed=seed)
    t = x.argmax(axis=1)  # spike times as features
    idx = np.random.default_rng(0).permutation(len(y))
    tr, te = idx[:700], idx[700:]
    return KNeighborsClassifier(5).fit(t[tr], y[tr]).score(t[te], y[te])


def test_manifold_dimension_makes_the_task_harder():
    # a curve per class (d=1) in 4 units stays apart; volumes (d=3) fill the space and overlap
    easy = np.mean([_knn_accuracy(1, s) for s in (0, 1)])
    hard = np.mean([_knn_accuracy(3, s) for s in (0, 1)])
    assert easy > 0.7 and easy - hard > 0.15, (easy, hard)


def test_datamodule_splits_by_seed_and_yields_time_major_batches():
    kw = dict(**{k: v for k, v in SMALL.items() if k != "num_steps"}, num_steps=20, encoding="none", batch_size=8)
    dm = RandmanDataModule(seed=0, **kw)
    dm.setup("fit")
    assert dm.input_shape == (6,) and dm.num_classes == 4
    sizes = {k: len(v) for k, v in dm.splits.items()}
    assert sum(sizes.values()) == 120 and sizes["test"] == 24
    for split in dm.splits.values():  # stratified
        counts = torch.bincount(split.tensors[1], minlength=4)
        assert counts.max() - counts.min() <= 1
    x, y = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    assert x.shape == (20, 8, 6) and y.shape == (8,)
    other = RandmanDataModule(seed=1, **kw)
    other.setup("fit")
    assert not torch.equal(dm.splits["test"].tensors[0], other.splits["test"].tensors[0])
    with pytest.raises(ValueError, match="encoding"):
        RandmanDataModule(**{**kw, "encoding": "direct"})


def test_tiny_training_run_through_the_real_conf(make_cfg):
    cfg = make_cfg("data=randman", "data.samples_per_class=40", *TINY, "logger=csv")
    summary = train(cfg)
    assert summary["status"] == "ok", summary.get("error")
    assert 0.0 <= summary["metrics"]["test/acc"] <= 1.0
    assert len(summary["epochs"]) == 1
    dm = instantiate(cfg.data)  # the preset as composed: spike rasters, no re-encoding
    assert dm.encoding == "none" and dm.input_shape == (cfg.data.units,) and dm.num_classes == cfg.data.classes

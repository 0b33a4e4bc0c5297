"""MNIST-shaped synthetic data written as real IDX files (for tests and benchmarks: no download).

28x28 uint8 images in 10 classes: each class a bright blob at its own place plus noise, so a
net can learn it; the four files carry MNIST's names, so ``data=mnist`` reads them unchanged.
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from qsnn.data.idx import IDX_FILES


def write_idx(path: Path, arr: np.ndarray) -> None:
    """An unsigned-byte IDX file (big-endian dimensions, as MNIST's)."""
    Path(path).write_bytes(bytes([0, 0, 0x08, arr.ndim]) + b"".join(struct.pack(">I", s) for s in arr.shape)
                           + arr.astype(np.uint8).tobytes())


def write_mnist_like(root: Path, n_train: int = 96, n_test: int = 32, seed: int = 0) -> Path:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:28, 0:28]
    centres = rng.uniform(7, 21, (10, 2))
    for split, n in (("train", n_train), ("test", n_test)):
        labels = rng.integers(0, 10, n)
        cy, cx = centres[labels, 0, None, None], centres[labels, 1, None, None]
        img = 255 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 18.0) + rng.normal(0, 30, (n, 28, 28))
        write_idx(root / IDX_FILES[f"{split}_images"], np.clip(img, 0, 255))
        write_idx(root / IDX_FILES[f"{split}_labels"], labels)
    return root

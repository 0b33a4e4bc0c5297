"""MNIST and Fashion-MNIST from the standard IDX files (raw or .gz), read with numpy.

Files looked for in ``root``, ``root/<Name>/raw`` (torchvision's layout) and ``root/<Name>``:
    train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte
each optionally ending in .gz, or in the dotted form common redistributions ship
(``train-images.idx3-ubyte``, raw or .gz). The validation set is a seeded, stratified slice of train;
``val_size=0`` trains on every training image, in file order, with no validation set (the QSNN
reference recipe: no held-out selection, the last weights are tested).
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from qsnn.data.inmemory import InMemoryDataModule

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class DataFileError(ValueError):
    """A dataset file is missing or malformed (message names the file and what is wrong)."""


def read_idx(path: str | Path) -> np.ndarray:
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise DataFileError(f"{path}: cannot read IDX file ({e})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES:
        raise DataFileError(f"{path}: not an IDX file (bad magic number {data[:4].hex() or 'empty'})")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataFileError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_DTYPES[data[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        raise DataFileError(f"{path}: truncated or oversized IDX data: header says shape {shape} "
                            f"({expected} bytes), file has {len(data) - header}")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)


def file_names(stem: str) -> tuple[str, ...]:
    """The accepted names of one IDX file: dashed and dotted (``-idx3`` / ``.idx3``), raw or .gz."""
    dotted = stem.replace("-idx", ".idx")
    return stem, stem + ".gz", dotted, dotted + ".gz"


def find_idx_files(root: str | Path, name: str) -> dict[str, Path]:
    root = Path(root).expanduser()
    dirs = [root, root / name / "raw", root / name]
    found, missing = {}, []
    for key, stem in IDX_FILES.items():
        hit = next((d / f for d in dirs for f in file_names(stem) if (d / f).is_file()), None)
        if hit is None:
            missing.append(stem)
        else:
            found[key] = hit
    if missing:
        listed = ", ".join(f"{m}[.gz] (or {m.replace('-idx', '.idx')}[.gz])" for m in missing)
        raise DataFileError(
            f"data.root={str(root)!r}: {name} files missing: {listed}; "
            f"put the four IDX files in {root} or {root / name / 'raw'}"
        )
    return found


class IDXDataModule(InMemoryDataModule):
    """MNIST-format dataset (28x28 grey images, 10 classes)."""

    def __init__(self, root: str, name: str = "MNIST", val_size: int = 5000, **kw):
        super().__init__(**kw)
        self.root, self.name, self.val_size = root, name, int(val_size)
        self.input_shape, self.num_classes = (1, 28, 28), 10

    def prepare_data(self) -> None:
        find_idx_files(self.root, self.name)  # fail before training with the list of missing files

    def load(self):
        from sklearn.model_selection import train_test_split

        files = find_idx_files(self.root, self.name)
        arr = {k: read_idx(p) for k, p in files.items()}
        for split in ("train", "test"):
            n_img, n_lab = len(arr[f"{split}_images"]), len(arr[f"{split}_labels"])
            if n_img != n_lab:
                raise DataFileError(f"{files[split + '_labels']}: {n_lab} labels for {n_img} images "
                                    f"in {files[split + '_images']}")

        def tensors(images, labels):
            # IDX stores multi-byte types big-endian; astype gives native floats torch can take
            x = images.astype(np.float32) / (255.0 if images.dtype == np.uint8 else 1.0)
            return torch.from_numpy(x).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))

        x, y = tensors(arr["train_images"], arr["train_labels"])
        test = tensors(arr["test_images"], arr["test_labels"])
        if self.val_size == 0:  # all training images; an empty val split (the runner skips validation)
            return {"train": (x, y), "val": (x[:0], y[:0]), "test": test}
        idx = np.arange(len(y))
        strat = y.numpy() if self.val_size >= 10 and len(np.unique(y.numpy())) > 1 else None
        tr, va = train_test_split(idx, test_size=self.val_size, stratify=strat, random_state=self.seed)
        return {"train": (x[tr], y[tr]), "val": (x[va], y[va]), "test": test}

"""MNIST and Fashion-MNIST from the standard IDX files (raw or .gz), read with numpy.

Files looked for in ``root/<Name>/raw`` (torchvision's layout) and ``root/<Name>``, where they can
only be that dataset (MNIST and Fashion-MNIST share the file names), and in ``root`` itself only
with ``flat_root=true`` (``data.flat_root``: the user says ``root`` holds this dataset alone;
``src/reproduce.py --mnist-root``):
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
from qsnn.errors import ConfigError, DataFileError

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


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


def find_idx_files(root: str | Path, name: str, flat_root: bool = False) -> dict[str, Path]:
    """The four files of dataset ``name``, from where they can only be that dataset (module doc)."""
    root = Path(root).expanduser()
    dirs = [root / name / "raw", root / name, *([root] if flat_root else [])]
    found, missing = {}, []
    for key, stem in IDX_FILES.items():
        hit = next((d / f for d in dirs for f in file_names(stem) if (d / f).is_file()), None)
        if hit is None:
            missing.append(stem)
        else:
            found[key] = hit
    if missing:
        listed = ", ".join(f"{m}[.gz] (or {m.replace('-idx', '.idx')}[.gz])" for m in missing)
        flat = [p.name for p in root.glob("*idx*-ubyte*")] if not flat_root and root.is_dir() else []
        hint = (f" ({root} itself holds IDX files: they are read there only with data.flat_root=true, when "
                f"{root} holds {name} alone)") if flat else ""
        where = f"{root}" if flat_root else f"{root / name / 'raw'}{hint}"
        raise DataFileError(f"data.root={str(root)!r}: {name} files missing: {listed}; put the four IDX files in "
                            f"{where}")
    return found


class IDXDataModule(InMemoryDataModule):
    """MNIST-format dataset (28x28 grey images, 10 classes)."""

    @classmethod
    def sample_shape(cls, data: dict) -> tuple[int, ...]:
        return (1, 28, 28)

    def __init__(self, root: str, name: str = "MNIST", val_size: int = 5000, flat_root: bool = False, **kw):
        super().__init__(**kw)
        self.root, self.name, self.val_size, self.flat_root = root, name, int(val_size), bool(flat_root)
        self.input_shape, self.num_classes = self.sample_shape({}), 10

    def load(self):
        files = find_idx_files(self.root, self.name, self.flat_root)
        arr = {k: read_idx(p) for k, p in files.items()}
        for split in ("train", "test"):
            check_pair(files[f"{split}_images"], arr[f"{split}_images"], files[f"{split}_labels"],
                       arr[f"{split}_labels"], self.input_shape[1:], self.num_classes)

        def tensors(images, labels):
            # IDX stores multi-byte types big-endian; astype gives native floats torch can take
            x = images.astype(np.float32) / (255.0 if images.dtype == np.uint8 else 1.0)
            return torch.from_numpy(x).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))

        x, y = tensors(arr["train_images"], arr["train_labels"])
        test = tensors(arr["test_images"], arr["test_labels"])
        if self.val_size == 0:  # all training images; an empty val split (the runner skips validation)
            return {"train": (x, y), "val": (x[:0], y[:0]), "test": test}
        tr, va = self._val_split(y.numpy(), files["train_images"])
        return {"train": (x[tr], y[tr]), "val": (x[va], y[va]), "test": test}

    def _val_split(self, y: np.ndarray, images_file: Path):
        from sklearn.model_selection import train_test_split

        if not self.val_size < len(y):
            raise ConfigError(f"data.val_size={self.val_size!r} is not allowed: {images_file} holds {len(y)} "
                              f"training images; use data.val_size < {len(y)}")
        strat = y if self.val_size >= 10 and len(np.unique(y)) > 1 else None
        try:
            return train_test_split(np.arange(len(y)), test_size=self.val_size, stratify=strat,
                                    random_state=self.seed)
        except ValueError as e:  # stratified: a split smaller than the number of classes
            raise ConfigError(f"data.val_size={self.val_size!r} is not allowed with the {len(y)} training images "
                              f"of {images_file}: both parts need each class (sklearn: "
                              f"{str(e).splitlines()[0]})") from None


def check_pair(images_file: Path, images: np.ndarray, labels_file: Path, labels: np.ndarray,
               image_hw: tuple[int, ...], num_classes: int) -> None:
    """One IDX images/labels pair: [N, H, W] images of the expected size, N integer labels in range."""
    if images.ndim != 3 or tuple(images.shape[1:]) != tuple(image_hw):
        raise DataFileError(f"{images_file}: images of shape {list(images.shape[1:])}, expected "
                            f"{'x'.join(map(str, image_hw))} (MNIST format)")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataFileError(f"{labels_file}: not a label file (shape {list(labels.shape)}, {labels.dtype}); "
                            "expected one integer per image")
    if len(images) != len(labels):
        raise DataFileError(f"{labels_file}: {len(labels)} labels for {len(images)} images in {images_file}")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataFileError(f"{labels_file}: labels {int(labels.min())}..{int(labels.max())}, outside "
                            f"0..{num_classes - 1} ({num_classes} classes)")

"""Digits split and encodings; IDX reader (raw and gz) and its errors."""
from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch

from qsnn.data.digits import DigitsDataModule
from qsnn.data.encoding import encode
from qsnn.errors import DataFileError
from qsnn.data.idx import IDX_FILES, IDXDataModule, find_idx_files, read_idx
from qsnn.run.runner import train
from test_bad_inputs import job_cfg


def test_digits_split_is_stratified_disjoint_and_seeded():
    dm = DigitsDataModule(seed=3)
    parts = dm.load()
    sizes = {k: len(v[1]) for k, v in parts.items()}
    assert sum(sizes.values()) == 1797 and sizes["test"] == 360
    for _, y in parts.values():
        counts = torch.bincount(y, minlength=10).float()
        assert counts.min() / counts.max() > 0.85  # stratified: classes balanced in every split
    again = DigitsDataModule(seed=3).load()
    other = DigitsDataModule(seed=4).load()
    assert torch.equal(parts["test"][0], again["test"][0])
    assert not torch.equal(parts["test"][0], other["test"][0])
    assert parts["train"][0].shape[1:] == (1, 8, 8) and 0 <= parts["train"][0].min() <= parts["train"][0].max() <= 1


def test_loader_yields_encoded_batches():
    dm = DigitsDataModule(batch_size=32, num_steps=7, encoding="rate")
    dm.setup()
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (32, 1, 8, 8) and y.shape == (32,)
    xe, _ = dm.on_after_batch_transfer((x, y), 0)
    assert xe.shape == (7, 32, 1, 8, 8) and set(xe.unique().tolist()) <= {0.0, 1.0}


def test_encodings():
    x = torch.rand(5, 3)
    d = encode(x, "direct", 4)
    assert d.shape == (4, 5, 3) and torch.equal(d[2], x) and d.stride(0) == 0
    lat = encode(x, "latency", 10)
    assert lat.shape == (10, 5, 3) and torch.all(lat.sum(0) <= 1)
    with pytest.raises(ValueError, match="data.encoding='morse'"):
        encode(x, "morse", 4)


def write_idx(path, arr: np.ndarray, gz=False):
    code = {np.uint8: 0x08}[arr.dtype.type]
    data = bytes([0, 0, code, arr.ndim]) + b"".join(struct.pack(">I", s) for s in arr.shape) + arr.tobytes()
    (gzip.open if gz else open)(path, "wb").write(data)


def make_mnist(root, n_train=60, n_test=20, gz=False, sub="", dotted=False):
    d = root / sub if sub else root
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        ext = ".gz" if gz else ""
        for kind, arr in (("images", images), ("labels", labels)):
            name = IDX_FILES[f"{split}_{kind}"]
            write_idx(d / ((name.replace("-idx", ".idx") if dotted else name) + ext), arr, gz)
    return d


@pytest.mark.parametrize("gz,sub,dotted", [(False, "", False), (True, "MNIST/raw", False),
                                           (False, "", True), (True, "MNIST", True)])
def test_idx_datamodule_reads_raw_and_gz(tmp_path, gz, sub, dotted):
    """Dashed (train-images-idx3-ubyte) and dotted (train-images.idx3-ubyte) names, raw and .gz."""
    d = make_mnist(tmp_path, gz=gz, sub=sub, dotted=dotted)
    assert ("train-images.idx3-ubyte" + (".gz" if gz else "") in {p.name for p in d.iterdir()}) == dotted
    dm = IDXDataModule(root=str(tmp_path), val_size=10, batch_size=8, flat_root=not sub)
    dm.prepare_data()
    dm.setup()
    assert [len(dm.splits[k]) for k in ("train", "val", "test")] == [50, 10, 20]
    x, y = dm.splits["test"][:]
    assert x.shape == (20, 1, 28, 28) and x.max() <= 1.0 and y.tolist() == [i % 10 for i in range(20)]


def test_flat_idx_files_are_read_only_when_the_root_is_said_to_hold_that_dataset(tmp_path):
    """MNIST and Fashion-MNIST share file names: flat files in data.root are neither unless
    data.flat_root=true says which; <root>/MNIST/raw is MNIST's only (issue 24: data=fmnist read MNIST)."""
    make_mnist(tmp_path / "flat")
    make_mnist(tmp_path / "named", sub="MNIST/raw")
    for i, (root, data) in enumerate(((tmp_path / "flat", "mnist"), (tmp_path / "flat", "fmnist"),
                                      (tmp_path / "named", "fmnist"))):
        with pytest.raises(DataFileError) as e:
            train(job_cfg(tmp_path / f"run{i}", f"data={data}", f"data.root={root}", "logger=none", "print_config=false"))
        name = {"mnist": "MNIST", "fmnist": "FashionMNIST"}[data]
        assert f"{name} files missing" in str(e.value) and str(root / name / "raw") in str(e.value)
        assert ("data.flat_root=true" in str(e.value)) == (root.name == "flat")  # the way to say it
    files = find_idx_files(tmp_path / "flat", "FashionMNIST", flat_root=True)
    assert files["train_images"] == tmp_path / "flat" / IDX_FILES["train_images"]


def test_idx_missing_files_lists_expected_names(tmp_path):
    with pytest.raises(DataFileError) as e:
        IDXDataModule(root=str(tmp_path / "nowhere")).prepare_data()
    msg = str(e.value)
    assert "\n" not in msg and "data.root=" in msg
    for stem in IDX_FILES.values():
        assert stem in msg and stem.replace("-idx", ".idx") in msg  # both accepted forms


def test_idx_bad_magic_truncated_and_label_mismatch(tmp_path):
    d = make_mnist(tmp_path)
    bad = d / IDX_FILES["test_labels"]
    bad.write_bytes(b"\x12\x34\x56\x78" + bad.read_bytes()[4:])
    with pytest.raises(DataFileError, match="bad magic"):
        read_idx(bad)
    img = d / IDX_FILES["train_images"]
    img.write_bytes(img.read_bytes()[:-100])
    with pytest.raises(DataFileError, match="truncated"):
        read_idx(img)
    make_mnist(tmp_path)  # restore, then mismatch label count
    write_idx(d / IDX_FILES["test_labels"], np.zeros(5, dtype=np.uint8))
    with pytest.raises(DataFileError, match="5 labels for 20 images"):
        IDXDataModule(root=str(tmp_path), val_size=10, flat_root=True).load()


def test_idx_float_images_big_endian(tmp_path):
    d = make_mnist(tmp_path)
    imgs = np.linspace(0, 1, 60 * 28 * 28, dtype=">f4").reshape(60, 28, 28)
    header = bytes([0, 0, 0x0D, 3]) + b"".join(struct.pack(">I", s) for s in imgs.shape)
    (d / IDX_FILES["train_images"]).write_bytes(header + imgs.tobytes())
    assert read_idx(d / IDX_FILES["train_images"]).dtype == np.dtype(">f4")
    x, _ = IDXDataModule(root=str(tmp_path), val_size=10, flat_root=True).load()["train"]
    assert x.dtype == torch.float32 and 0.0 <= x.min() and x.max() <= 1.0

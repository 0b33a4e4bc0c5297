"""Write tiny synthetic event datasets in the exact on-disk layout tonic 1.7 reads.

Each class gets its own event pattern (a class-dependent spot moving over time), so the sets
are learnable; samples of one class share their bytes, which keeps writing 20000 N-MNIST
files fast. File counts meet tonic's ``_check_exists`` minimums (see qsnn/data/tonic_sets.py).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CALTECH_CLASSES = ["accordion", "airplanes", "anchor", "ant", "barrel"]


def _events(label: int, n: int, size: int, duration_us: int, rng: np.random.Generator):
    """x, y, t (us, sorted), p for a spot whose start position depends on the label."""
    t = np.sort(rng.integers(0, duration_us, n))
    cx, cy = (label * 37) % size, (label * 53) % size
    x = (cx + t * size // (2 * duration_us) + rng.integers(-1, 2, n)) % size
    y = (cy + rng.integers(-2, 3, n)) % size
    p = rng.integers(0, 2, n)
    return x, y, t, p


def _mnist_bytes(x, y, t, p) -> bytes:
    """N-MNIST / N-Caltech101 .bin: 5 bytes per event (x, y, p<<7 | t>>16, t>>8, t)."""
    raw = np.zeros((len(t), 5), np.uint8)
    raw[:, 0], raw[:, 1] = x, y
    raw[:, 2] = (p << 7) | ((t >> 16) & 127)
    raw[:, 3], raw[:, 4] = (t >> 8) & 255, t & 255
    return raw.tobytes()


def _write_many(paths_and_bytes) -> None:
    """Write each file once per distinct content, then hard-link (about twice as fast)."""
    first: dict[bytes, Path] = {}
    for path, data in paths_and_bytes:
        if data in first:
            try:
                os.link(first[data], path)
                continue
            except OSError:
                pass
        Path(path).write_bytes(data)
        first.setdefault(data, Path(path))


def write_nmnist(root: Path, per_split: int = 10000, events: int = 40) -> None:
    rng = np.random.default_rng(0)
    loc = Path(root) / "NMNIST"
    for split, marker in (("Train", "train.zip"), ("Test", "test.zip")):
        (loc / split).mkdir(parents=True, exist_ok=True)
        (loc / marker).touch()
        blobs = [_mnist_bytes(*_events(c, events, 34, 300_000, rng)) for c in range(10)]
        for c in range(10):
            (loc / split / str(c)).mkdir(exist_ok=True)
        _write_many((loc / split / str(i % 10) / f"{i:05d}.bin", blobs[i % 10]) for i in range(per_split))


def write_dvsgesture(root: Path, users: int = 10, events: int = 300, duration_ms: int = 1000,
                     size: int = 128) -> None:
    """ibmGesture{Train,Test}/userNN_<lighting>/<label>.npy, [N, 4] int (x, y, p, t in ms)."""
    rng = np.random.default_rng(1)
    loc = Path(root) / "DVSGesture"
    for folder in ("ibmGestureTrain", "ibmGestureTest"):
        (loc / folder).mkdir(parents=True, exist_ok=True)
        (loc / f"{folder}.tar.gz").touch()
        for u in range(users):
            d = loc / folder / f"user{u + 1:02d}_fluorescent"
            d.mkdir(exist_ok=True)
            for label in range(11):
                x, y, t, p = _events(label, events, size, duration_ms * 1000, rng)
                np.save(d / f"{label}.npy", np.stack([x, y, p, t // 1000], 1).astype(np.int64))


def write_cifar10dvs(root: Path, per_class: int = 100, events: int = 60) -> None:
    """<class>/cifar10_<class>_<i>.aedat4 (written with dv-processing, read by tonic with aedat)."""
    import dv_processing as dv

    rng = np.random.default_rng(2)
    loc = Path(root) / "CIFAR10DVS"
    loc.mkdir(parents=True, exist_ok=True)
    (loc / "CIFAR10DVS.zip").touch()
    for c, name in enumerate(CIFAR_CLASSES):
        (loc / name).mkdir(exist_ok=True)
        template = loc / name / f"cifar10_{name}_0.aedat4"
        writer = dv.io.MonoCameraWriter(str(template), dv.io.MonoCameraWriter.EventOnlyConfig("DVS128", (128, 128)))
        store = dv.EventStore()
        for x, y, t, p in zip(*_events(c, events, 128, 200_000, rng)):
            store.push_back(int(t) + 1, int(x), int(y), bool(p))
        writer.writeEvents(store)
        del writer  # closes the file
        blob = template.read_bytes()
        _write_many((loc / name / f"cifar10_{name}_{i}.aedat4", blob) for i in range(1, per_class))


def write_ncaltech101(root: Path, total: int = 8709, events: int = 40) -> None:
    """Caltech101/<class name>/image_<i>.bin (N-MNIST byte format), string labels."""
    rng = np.random.default_rng(3)
    loc = Path(root) / "NCALTECH101"
    (loc / "Caltech101").mkdir(parents=True, exist_ok=True)
    (loc / "N-Caltech101-archive.zip").touch()
    blobs = []
    for c, name in enumerate(CALTECH_CLASSES):
        (loc / "Caltech101" / name).mkdir(exist_ok=True)
        blobs.append(_mnist_bytes(*_events(c, events, 200, 300_000, rng)))
    k = len(CALTECH_CLASSES)
    _write_many((loc / "Caltech101" / CALTECH_CLASSES[i % k] / f"image_{i:04d}.bin", blobs[i % k])
                for i in range(total))


def write_shd(root: Path, n_train: int = 200, n_test: int = 40, events: int = 100) -> None:
    """shd_{train,test}.h5 (spikes/times in s, spikes/units, labels, extra/keys, extra/speaker)
    plus the .h5.zip markers tonic checks for."""
    import h5py

    rng = np.random.default_rng(4)
    loc = Path(root) / "SHD"
    loc.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        (loc / f"shd_{split}.h5.zip").touch()
        labels = np.arange(n) % 20
        with h5py.File(loc / f"shd_{split}.h5", "w") as f:
            times = f.create_dataset("spikes/times", (n,), dtype=h5py.vlen_dtype(np.float32))
            units = f.create_dataset("spikes/units", (n,), dtype=h5py.vlen_dtype(np.uint16))
            for i, label in enumerate(labels):
                x, _, t, _ = _events(int(label), events, 700, 1_000_000, rng)
                times[i], units[i] = (t / 1e6).astype(np.float32), x.astype(np.uint16)
            f["labels"] = labels.astype(np.uint16)
            f["extra/keys"] = np.array([f"digit-{i}".encode() for i in range(20)])
            f["extra/speaker"] = (np.arange(n) % 5).astype(np.uint16)


WRITERS = {"nmnist": write_nmnist, "dvsgesture": write_dvsgesture, "cifar10dvs": write_cifar10dvs,
           "ncaltech101": write_ncaltech101, "shd": write_shd}

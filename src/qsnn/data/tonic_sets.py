"""The five tonic 1.7 datasets qsnn reads, what each wants on disk, and how to open it offline.

tonic downloads whenever its ``_check_exists()`` fails, and that check is by file count. With
``download=false`` we run the same check first and, when it fails, raise one error listing
what tonic expects and where, so tonic never touches the network. Layouts (under data.root):

    NMNIST/train.zip, NMNIST/test.zip, >= 10000 *.bin under NMNIST/Train and NMNIST/Test
        (one folder per digit, the folder name ends with the label)
    DVSGesture/ibmGestureTrain.tar.gz, ibmGestureTest.tar.gz, >= 100 *.npy under
        DVSGesture/ibmGestureTrain and .../ibmGestureTest, as userNN_<lighting>/<label>.npy
        ([N, 4] x, y, p, t in ms)
    CIFAR10DVS/CIFAR10DVS.zip, >= 1000 *.aedat4 under CIFAR10DVS/<class name>/ (needs ``aedat``)
    NCALTECH101/N-Caltech101-archive.zip, >= 8709 *.bin under NCALTECH101/Caltech101/<class>/
    SHD/shd_train.h5.zip, shd_test.h5.zip (any content) and the extracted shd_train.h5, shd_test.h5
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qsnn.errors import DataFileError


@dataclass(frozen=True)
class EventSet:
    tonic_class: str               # name in tonic.datasets
    sensor_size: tuple[int, int, int]  # (W, H, P) as tonic writes it; H == 1 for 1-D (audio) sensors
    num_classes: int
    official_split: bool           # False: one pool, split train/val/test by seed
    # per official split ("train"/"test", or "all"): marker archive, folder, extension, minimum count
    layout: dict


SETS = {
    "nmnist": EventSet("NMNIST", (34, 34, 2), 10, True, {
        "train": ("train.zip", "Train", ".bin", 10000), "test": ("test.zip", "Test", ".bin", 10000)}),
    "dvsgesture": EventSet("DVSGesture", (128, 128, 2), 11, True, {
        "train": ("ibmGestureTrain.tar.gz", "ibmGestureTrain", ".npy", 100),
        "test": ("ibmGestureTest.tar.gz", "ibmGestureTest", ".npy", 100)}),
    "cifar10dvs": EventSet("CIFAR10DVS", (128, 128, 2), 10, False, {
        "all": ("CIFAR10DVS.zip", "", ".aedat4", 1000)}),
    # recordings vary in size (up to about 240x180); events outside the sensor box are dropped
    "ncaltech101": EventSet("NCALTECH101", (240, 180, 2), 101, False, {
        "all": ("N-Caltech101-archive.zip", "Caltech101", ".bin", 8709)}),
    "shd": EventSet("SHD", (700, 1, 1), 20, True, {
        "train": ("shd_train.h5.zip", "", ".h5", 1), "test": ("shd_test.h5.zip", "", ".h5", 1)}),
}


def check_files(name: str, root: str | Path, split: str) -> None:
    """Mirror tonic's ``_check_exists`` (plus what its ``__init__`` opens) for one split."""
    s = SETS[name]
    loc = Path(root).expanduser() / s.tonic_class
    marker, folder, ext, n = s.layout[split]
    if not Path(root).expanduser().is_dir():
        raise DataFileError(f"data.root={str(root)!r}: no such directory; {name} is read from "
                            f"{loc} ({_wants(loc, marker, folder, ext, n)}), or set data.download=true")
    found = sum(f.endswith(ext) for _, _, files in os.walk(loc / folder) for f in files)  # faster than glob
    problems = []
    if not (loc / marker).is_file():
        problems.append(f"{loc / marker} is missing (tonic only checks that it exists; an empty file will do)")
    if found < n:
        problems.append(f"{found} {ext} files under {loc / folder}, tonic needs >= {n}")
    if name == "shd" and not (loc / marker[:-4]).is_file():
        problems.append(f"{loc / marker[:-4]} is missing (the extracted HDF5 file)")
    if problems:
        raise DataFileError(f"data.root={str(root)!r}: {name} {split} files not found: {'; '.join(problems)}. "
                            f"Expected {_wants(loc, marker, folder, ext, n)}, or set data.download=true")
    if name == "shd":
        _check_shd(loc / marker[:-4])
    if name == "cifar10dvs":
        try:
            import aedat  # noqa: F401  (tonic reads .aedat4 with it)
        except ImportError:
            raise DataFileError("cifar10dvs: tonic reads .aedat4 files with the 'aedat' package: "
                                "pip install 'aedat>=2,<3'") from None


def _wants(loc: Path, marker: str, folder: str, ext: str, n: int) -> str:
    return f"{loc / marker} and >= {n} {ext} files under {loc / folder}"


def _check_shd(path: Path) -> None:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in ("spikes/times", "spikes/units", "labels", "extra/keys", "extra/speaker")
                       if k not in f]
    except OSError as e:
        raise DataFileError(f"{path}: not a readable HDF5 file ({e})") from None
    if missing:
        raise DataFileError(f"{path}: not an SHD file: missing HDF5 datasets {', '.join(missing)}")


def open_tonic(name: str, root: str | Path, split: str, transform, download: bool):
    """tonic's dataset object for one official split ("train"/"test") or the whole pool ("all")."""
    import tonic

    if not download:
        check_files(name, root, split)
    cls = getattr(tonic.datasets, SETS[name].tonic_class)
    kw = {} if split == "all" else {"train": split == "train"}
    try:
        return cls(str(Path(root).expanduser()), transform=transform, **kw)
    except (ValueError, KeyError, IndexError) as e:  # tonic parses folder names while indexing
        loc = Path(root).expanduser() / SETS[name].tonic_class
        raise DataFileError(f"{loc}: tonic.datasets.{cls.__name__} could not index the files "
                            f"({type(e).__name__}: {e}); see qsnn/data/tonic_sets.py for the layout") from None


def targets(name: str, ds) -> list:
    """Labels of every sample, without reading the events."""
    if name == "shd":
        import h5py

        with h5py.File(Path(ds.location_on_system) / ds.data_filename, "r") as f:
            return [int(v) for v in np.asarray(f["labels"])]
    return list(ds.targets)


def sample_file(ds, index: int) -> str:
    """The file a sample is read from (for error messages)."""
    if getattr(ds, "data", None):
        return str(ds.data[index])
    return str(Path(ds.location_on_system) / getattr(ds, "data_filename", ""))

"""Event-camera and spiking-audio datasets (tonic) as frame sequences, cached on disk.

Per sample, before caching:  events -> [Denoise] -> [Downsample by an integer factor] -> drop
events outside the (downsampled) sensor -> ToFrame (``n_time_bins`` or ``time_window_us``)
-> crop or zero-pad to a fixed T. Frames are int16 counts [T, P, H, W] ([T, W] for 1-D sensors
such as SHD). Train uses ``num_steps`` steps, val/test ``eval_steps`` (the DVSGesture paper:
100 / 600 steps of 3 ms).

The cache holds one ``.npy`` per sample in one folder per (dataset, root, split, every
transform parameter, T); the folder name ends with a hash of those parameters (also written
to ``params.json``), so a changed transform never reads a stale cache. A corrupt or partial
entry is rebuilt (see ``CachedFrames`` for why not tonic's DiskCachedDataset).

Batches are (x [B, T, ...] float32, y [B] int64); ``encoding: none`` moves them to [T, B, ...]
in ``on_after_batch_transfer``. Splits: official train/test sets get val = a seeded,
stratified slice of train; pooled sets (CIFAR10-DVS, N-Caltech101) a seeded, stratified
train/val/test split. String labels map to ids in sorted name order.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from qsnn.data.base import SplitsDataModule
from qsnn.errors import ConfigError, DataFileError
from qsnn.data.tonic_sets import SETS, open_tonic, sample_file, targets

log = logging.getLogger(__name__)
CACHE_FORMAT = 2  # bump when the cached array layout changes


@dataclass(frozen=True)
class FrameTransform:
    """tonic events -> fixed-length int16 frames. Every field is part of the cache key."""

    sensor_size: tuple[int, int, int]  # native (W, H, P)
    downsample: int = 1
    denoise_us: float | None = None
    time_window_us: float | None = None
    n_time_bins: int | None = None
    num_steps: int | None = None       # fixed T (crop / zero-pad); None keeps n_time_bins

    @property
    def out_sensor(self) -> tuple[int, int, int]:
        w, h, p = self.sensor_size
        return math.ceil(w / self.downsample), math.ceil(h / self.downsample), p

    @property
    def frame_shape(self) -> tuple[int, ...]:
        w, h, p = self.out_sensor
        return (p * w,) if h == 1 else (p, h, w)

    def __call__(self, events: np.ndarray) -> np.ndarray:
        from tonic import transforms as tt

        w, h, p = self.out_sensor
        if self.denoise_us and "y" in events.dtype.names:
            events = tt.Denoise(filter_time=self.denoise_us)(events)
        if self.downsample > 1:
            events = tt.Downsample(spatial_factor=1.0 / self.downsample)(events)
        keep = (events["x"] >= 0) & (events["x"] < w)
        if "y" in events.dtype.names:
            keep &= (events["y"] >= 0) & (events["y"] < h)
        events = events[keep]
        if len(events):
            frames = tt.ToFrame(sensor_size=(w, h, p), time_window=self.time_window_us,
                                n_time_bins=self.n_time_bins)(events)
        else:  # tonic's empty-input frame has (W, H) swapped; make ours
            frames = np.zeros((self.n_time_bins or 1, p, h, w), dtype=np.int16)
        frames = frames.reshape(len(frames), *self.frame_shape).astype(np.int16, copy=False)
        t = self.num_steps or len(frames)
        if len(frames) >= t:
            return np.ascontiguousarray(frames[:t])
        return np.concatenate([frames, np.zeros((t - len(frames), *self.frame_shape), np.int16)])


class EventFrames(Dataset):
    """One tonic dataset -> frames per sample (events read and transformed, no cache)."""

    def __init__(self, raw, transform: FrameTransform):
        self.raw, self.transform = raw, transform
        self.built = 0  # samples built from events (the cache tests count these)

    def __len__(self):
        return len(self.raw)

    def __getitem__(self, i) -> np.ndarray:
        try:
            events, _ = self.raw[i]
        except Exception as e:  # the file's content is not what tonic expects
            raise DataFileError(f"{sample_file(self.raw, i)}: cannot read as {self.raw.__class__.__name__} "
                                f"events ({type(e).__name__}: {e})") from None
        self.built += 1
        return self.transform(events)


class CachedFrames(Dataset):
    """(float32 frames, label id) per sample; frames built once and kept as ``<i>.npy`` in
    ``cache_path`` (None: no cache).

    Not tonic's DiskCachedDataset: its one-HDF5-file-per-sample read costs ~9 ms in h5py's
    open against ~0.4 ms for np.load, which made a cached DVSGesture epoch ~50% slower than
    in-memory tensors (tests/bench_events.py). Entries are written to a temp file and renamed,
    so an interrupted run leaves no partial entry; one that cannot be read or has the wrong
    shape is rebuilt. Counts are stored as uint8 when they fit (half the disk of int16)."""

    def __init__(self, frames: EventFrames, labels: list[int], cache_path: str | Path | None):
        self.frames, self.labels = frames, labels
        self.cache_path = Path(cache_path) if cache_path else None
        self.shape = (frames.transform.num_steps, *frames.transform.frame_shape)

    def __len__(self):
        return len(self.frames)

    def _get(self, i) -> np.ndarray:
        if self.cache_path is None:
            return self.frames[i]
        path = self.cache_path / f"{i}.npy"
        try:
            x = np.load(path)
            if x.shape == self.shape:
                return x
            log.warning("rebuilding cache entry %s: shape %s, expected %s", path, x.shape, self.shape)
        except FileNotFoundError:
            pass
        except (OSError, ValueError, EOFError) as e:  # corrupt or truncated entry
            log.warning("rebuilding cache entry %s (%s)", path, e)
        x = self.frames[i]
        x = x.astype(np.uint8) if x.max(initial=0) <= 255 else x
        tmp = path.with_name(f".{i}.{os.getpid()}.tmp.npy")
        np.save(tmp, x)
        os.replace(tmp, path)
        return x

    def __getitem__(self, i):
        return torch.from_numpy(self._get(i).astype(np.float32)), self.labels[i]


def cache_dir_for(cache_root: str | Path, name: str, root: str | Path, split: str, tf: FrameTransform) -> Path:
    import tonic

    params = {"dataset": name, "root": str(Path(root).expanduser().resolve()), "split": split,
              **asdict(tf), "tonic": tonic.__version__, "format": CACHE_FORMAT}
    digest = hashlib.sha1(json.dumps(params, sort_keys=True, default=list).encode()).hexdigest()[:12]
    tag = f"{split}_ds{tf.downsample}_" + (f"tw{tf.time_window_us:g}" if tf.time_window_us else f"bins{tf.n_time_bins}")
    path = Path(cache_root).expanduser() / name / f"{tag}_T{tf.num_steps}_{digest}"
    path.mkdir(parents=True, exist_ok=True)
    if not (path / "params.json").exists():
        (path / "params.json").write_text(json.dumps(params, indent=1, default=list))
    return path


def split_indices(labels, fractions: list[float], seed: int) -> list[np.ndarray]:
    """[rest, part_1, ...]: seeded slices of the given fractions, stratified when every class
    can be (falls back to a plain shuffle for tiny sets)."""
    from sklearn.model_selection import train_test_split

    rest, parts, left = np.arange(len(labels)), [], 1.0
    labels = np.asarray(labels)
    for f in fractions:
        size = f / left
        try:
            rest, part = train_test_split(rest, test_size=size, stratify=labels[rest], random_state=seed)
        except ValueError:  # a class with one sample, or fewer slice rows than classes
            rest, part = train_test_split(rest, test_size=size, random_state=seed)
        parts.append(np.sort(part))
        left -= f
    return [np.sort(rest), *parts]


class EventDataModule(SplitsDataModule):
    """One tonic dataset (``name`` in nmnist, dvsgesture, cifar10dvs, ncaltech101, shd)."""

    @classmethod
    def sample_shape(cls, data: dict) -> tuple[int, ...]:
        """One frame's shape: the (downsampled) sensor, [P, H, W] or [P * W] for a 1-D sensor."""
        sensor = data.get("sensor_size") or SETS[data["name"]].sensor_size
        return FrameTransform(sensor_size=tuple(sensor), downsample=data["downsample"]).frame_shape

    def __init__(self, name: str, root: str, download: bool = False, downsample: int = 1,
                 denoise_us: float | None = None, time_window_us: float | None = None,
                 n_time_bins: int | None = None, num_steps: int | None = None, eval_steps: int | None = None,
                 sensor_size: list[int] | None = None, num_classes: int | None = None,
                 val_fraction: float = 0.1, test_fraction: float = 0.2, batch_size: int = 16,
                 eval_batch_size: int | None = None, num_workers: int = 0, cache: bool = True,
                 cache_dir: str | None = None, encoding: str = "none", seed: int = 0):
        super().__init__()
        if name not in SETS:
            raise ConfigError(f"data.name={name!r} is not allowed: use one of {', '.join(SETS)}")
        if encoding != "none":
            raise ConfigError(f"data.encoding={encoding!r} is not allowed for {name}: the samples are already "
                              "frame sequences, use none")
        if (time_window_us is None) == (n_time_bins is None):
            raise ConfigError(f"data.time_window_us={time_window_us!r}, data.n_time_bins={n_time_bins!r}: "
                              "set exactly one of them")
        if time_window_us is not None and not num_steps:
            raise ConfigError(f"data.num_steps={num_steps!r} is not allowed with data.time_window_us: "
                              "set the fixed number of steps T (crop / zero-pad)")
        if isinstance(downsample, bool) or int(downsample) != downsample or downsample < 1:
            raise ConfigError(f"data.downsample={downsample!r} is not allowed: use an integer factor >= 1")
        for key, v in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not 0 < v < 1:
                raise ConfigError(f"data.{key}={v!r} is not allowed: use a fraction in (0, 1)")
        spec = SETS[name]
        sensor = tuple(int(v) for v in (sensor_size or spec.sensor_size))
        if len(sensor) != 3:
            raise ConfigError(f"data.sensor_size={sensor_size!r} is not allowed: use [W, H, P]")
        self.name, self.root, self.download, self.seed = name, str(root), bool(download), int(seed)
        self.batch_size, self.num_workers, self.encoding = int(batch_size), int(num_workers), encoding
        self.eval_batch_size = int(eval_batch_size or batch_size)
        self.val_fraction, self.test_fraction = float(val_fraction), float(test_fraction)
        self.cache_dir = (cache_dir or str(Path(root) / "cache")) if cache else None
        self.num_steps = int(num_steps or n_time_bins)
        self.eval_steps = int(eval_steps or self.num_steps)
        common = dict(sensor_size=sensor, downsample=int(downsample), denoise_us=denoise_us,
                      time_window_us=time_window_us, n_time_bins=n_time_bins)
        self.train_tf = FrameTransform(**common, num_steps=self.num_steps)
        self.eval_tf = FrameTransform(**common, num_steps=self.eval_steps)
        self.input_shape = self.train_tf.frame_shape
        self.num_classes = int(num_classes or spec.num_classes)
        self.splits: dict[str, Dataset] = {}
        self._raw: dict | None = None
        self.label_ids: dict | None = None  # string label -> id, set when indexing

    # -- indexing: file checks and labels, before the model is built --------------------
    def prepare_data(self) -> None:
        self._index()

    def _index(self) -> dict:
        """{official split: (tonic dataset, labels as ids)}; opens tonic offline (or downloads)."""
        if self._raw is not None:
            return self._raw
        names = ["train", "test"] if SETS[self.name].official_split else ["all"]
        raw = {s: open_tonic(self.name, self.root, s, None, self.download) for s in names}
        labels = {s: targets(self.name, ds) for s, ds in raw.items()}
        every = [v for ls in labels.values() for v in ls]
        # string labels (N-Caltech101 folder names) -> ids in sorted name order, stable across runs
        self.label_ids = {c: i for i, c in enumerate(sorted(set(every)))} if any(
            isinstance(v, str) for v in every) else None
        ids = {s: [self.label_ids[v] for v in ls] if self.label_ids else [int(v) for v in ls]
               for s, ls in labels.items()}
        top = max(max(v) for v in ids.values()) if every else -1
        if top >= self.num_classes or min(min(v, default=0) for v in ids.values()) < 0:
            raise DataFileError(f"data.root={self.root!r}: {self.name} has labels up to {top} "
                                f"({len(set(every))} classes), outside 0..{self.num_classes - 1}; "
                                f"set data.num_classes={top + 1}")
        self._raw = {s: (raw[s], ids[s]) for s in names}
        return self._raw

    def _frames(self, split: str, tf: FrameTransform) -> CachedFrames:
        raw, labels = self._raw[split]
        cache = cache_dir_for(self.cache_dir, self.name, self.root, split, tf) if self.cache_dir else None
        return CachedFrames(EventFrames(raw, tf), labels, cache)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        raw = self._index()
        if "all" in raw:
            tr, va, te = split_indices(raw["all"][1], [self.val_fraction, self.test_fraction], self.seed)
            train_eval = self._frames("all", self.eval_tf)
            self.splits = {"train": Subset(self._frames("all", self.train_tf), tr),
                           "val": Subset(train_eval, va), "test": Subset(train_eval, te)}
        else:
            tr, va = split_indices(raw["train"][1], [self.val_fraction], self.seed)
            self.splits = {"train": Subset(self._frames("train", self.train_tf), tr),
                           "val": Subset(self._frames("train", self.eval_tf), va),
                           "test": self._frames("test", self.eval_tf)}

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        g = torch.Generator().manual_seed(self.seed) if shuffle else None
        return DataLoader(self.splits[split], batch_size=self.batch_size if shuffle else self.eval_batch_size,
                          shuffle=shuffle, generator=g, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)

    def num_steps_of(self, x: torch.Tensor) -> int:
        return x.shape[1]  # [B, T, ...] frames: T is the sample's own (num_steps or eval_steps)

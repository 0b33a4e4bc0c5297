"""Event datasets: synthetic files in tonic's real on-disk layouts, read through the real tonic
classes and EventDataModule; splits, cache behaviour, errors, one tiny training run each."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from eventfiles import CALTECH_CLASSES, write_dvsgesture
from qsnn.data.events import split_indices
from qsnn.errors import ConfigError, DataFileError
from qsnn.run.build import build_datamodule, build_module

NAMES = ["nmnist", "dvsgesture", "cifar10dvs", "ncaltech101", "shd"]
# per set: (input_shape, T, model overrides for a tiny net)
EXPECT = {
    "nmnist": ((2, 34, 34), 25, ["model=csnn", "model.channels=[2,2]", "model.batchnorm=false"]),
    "dvsgesture": ((2, 32, 32), 100, ["model=csnn", "model.channels=[2,2]", "model.batchnorm=false"]),
    "cifar10dvs": ((2, 32, 32), 10, ["model=csnn", "model.channels=[2,2]", "model.batchnorm=false"]),
    "ncaltech101": ((2, 45, 60), 10, ["model=csnn", "model.channels=[2,2]", "model.batchnorm=false"]),
    "shd": ((700,), 100, ["model.hidden=[8]"]),
}


def data_overrides(name, root, cache):
    return [f"data={name}", f"data.root={root}", f"data.cache_dir={cache}", "data.batch_size=8"]


def datamodule(make_cfg, name, root, cache, *extra):
    dm = instantiate(make_cfg(*data_overrides(name, root, cache), *extra).data)
    dm.prepare_data()
    dm.setup()
    return dm


@pytest.mark.parametrize("name", NAMES)
def test_shapes_labels_splits(make_cfg, event_root, tmp_path, name):
    shape, steps, _ = EXPECT[name]
    dm = datamodule(make_cfg, name, event_root, tmp_path / "cache")
    assert tuple(dm.input_shape) == shape
    x, y = next(iter(dm.train_dataloader()))
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.shape == (8, steps, *shape) and y.shape == (8,)
    assert x.sum() > 0 and (x >= 0).all()
    xt, _ = dm.on_after_batch_transfer((x, y), 0)
    assert xt.shape == (steps, 8, *shape)  # encoding none: [T, B, ...]
    assert 0 <= int(y.min()) and int(y.max()) < dm.num_classes

    tr, va = dm.splits["train"], dm.splits["val"]
    assert not set(tr.indices) & set(va.indices)
    labels = np.asarray(dm._raw["all" if "all" in dm._raw else "train"][1])
    if name in ("cifar10dvs", "ncaltech101"):  # no official split: seeded stratified train/val/test
        te = dm.splits["test"]
        assert not set(te.indices) & (set(tr.indices) | set(va.indices))
        assert len(tr) + len(va) + len(te) == len(labels)
        assert abs(len(te) / len(labels) - 0.2) < 0.01 and abs(len(va) / len(labels) - 0.1) < 0.01
    else:
        assert len(tr) + len(va) == len(labels)
    # stratified: every class keeps its share in the val slice
    share = Counter(labels[va.indices].tolist())
    assert set(share) == set(labels.tolist())
    # the split depends only on the seed
    fractions = [0.1, 0.2] if name in ("cifar10dvs", "ncaltech101") else [0.1]
    assert np.array_equal(split_indices(labels, fractions, seed=dm.seed)[1], va.indices)
    assert not np.array_equal(split_indices(labels, fractions, seed=dm.seed + 1)[1], va.indices)


def test_string_labels_map_to_sorted_ids(make_cfg, event_root, tmp_path):
    dm = datamodule(make_cfg, "ncaltech101", event_root, tmp_path / "cache")
    assert dm.label_ids == {c: i for i, c in enumerate(sorted(CALTECH_CLASSES))}
    raw, ids = dm._raw["all"]
    for i in (0, 1, 7):  # the folder name of each sample's file gives its id
        assert ids[i] == dm.label_ids[raw.data[i].split("/")[-2]]
        assert dm.splits["train"].dataset[i][1] == ids[i]


def test_eval_steps_differ_from_train_steps(make_cfg, event_root, tmp_path):
    dm = datamodule(make_cfg, "dvsgesture", event_root, tmp_path / "cache", "data.eval_steps=300")
    assert next(iter(dm.val_dataloader()))[0].shape[1] == 300
    assert next(iter(dm.test_dataloader()))[0].shape[1] == 300
    assert next(iter(dm.train_dataloader()))[0].shape[1] == 100
    # 1 s of events in 3 ms bins is about 333 frames, cropped to 300
    frames = dm.splits["test"][0][0]
    assert frames.shape == (300, 2, 32, 32) and frames.sum() > 0


def test_cache_reused_rebuilt_and_keyed_by_transform(make_cfg, event_root, tmp_path):
    cache = tmp_path / "cache"
    dm = datamodule(make_cfg, "dvsgesture", event_root, cache)
    train_set = dm.splits["train"].dataset
    epoch1 = [train_set[i] for i in range(12)]
    assert train_set.frames.built == 12
    epoch2 = [train_set[i] for i in range(12)]
    assert train_set.frames.built == 12  # second pass reads the cache only
    assert all(torch.equal(a[0], b[0]) and a[1] == b[1] for a, b in zip(epoch1, epoch2))
    (cache_dir,) = [p for p in (cache / "dvsgesture").iterdir() if p.name.startswith("train_") and "T100" in p.name]
    assert len(list(cache_dir.glob("*.npy"))) == 12 and (cache_dir / "params.json").is_file()

    # a corrupt entry (garbage bytes), a truncated one and one of the wrong shape are rebuilt
    (cache_dir / "3.npy").write_bytes(b"not a numpy file")
    good = (cache_dir / "5.npy").read_bytes()
    (cache_dir / "5.npy").write_bytes(good[: len(good) // 2])
    np.save(cache_dir / "7.npy", np.zeros((4, 2), np.uint8))
    for i in (3, 5, 7):
        assert torch.equal(train_set[i][0], epoch1[i][0])
    assert train_set.frames.built == 15
    assert not list(cache_dir.glob(".*tmp*"))  # entries are written atomically

    # a fresh module with the same settings reuses the same cache; a changed transform does not
    same = datamodule(make_cfg, "dvsgesture", event_root, cache).splits["train"].dataset
    assert same.cache_path == train_set.cache_path and torch.equal(same[0][0], epoch1[0][0])
    assert same.frames.built == 0
    for change in ("data.downsample=8", "data.time_window_us=5000", "data.denoise_us=10000", "data.num_steps=50"):
        new = datamodule(make_cfg, "dvsgesture", event_root, cache, change).splits["train"].dataset
        assert new.cache_path != train_set.cache_path, change
        new[0]
        assert new.frames.built == 1, change
    assert datamodule(make_cfg, "dvsgesture", event_root, cache, "data.downsample=8").input_shape == (2, 16, 16)


def test_missing_files_say_what_tonic_expects(make_cfg, tmp_path):
    with pytest.raises(DataFileError, match=r"no such directory.*DVSGesture.*ibmGestureTrain\.tar\.gz"):
        datamodule(make_cfg, "dvsgesture", tmp_path / "nowhere", tmp_path / "cache")
    write_dvsgesture(tmp_path / "few", users=2)  # 22 .npy per split: below tonic's 100
    with pytest.raises(DataFileError, match=r"22 \.npy files under .*ibmGestureTrain, tonic needs >= 100"):
        datamodule(make_cfg, "dvsgesture", tmp_path / "few", tmp_path / "cache")
    (tmp_path / "shd" / "SHD").mkdir(parents=True)
    (tmp_path / "shd" / "SHD" / "shd_train.h5").write_bytes(b"junk")
    with pytest.raises(DataFileError, match=r"shd_train\.h5\.zip is missing"):
        datamodule(make_cfg, "shd", tmp_path / "shd", tmp_path / "cache")
    (tmp_path / "shd" / "SHD" / "shd_train.h5.zip").touch()
    with pytest.raises(DataFileError, match=r"shd_train\.h5: not a readable HDF5 file"):
        datamodule(make_cfg, "shd", tmp_path / "shd", tmp_path / "cache")


def test_wrong_format_names_the_file(make_cfg, tmp_path):
    write_dvsgesture(tmp_path, users=10, events=20)
    dm = datamodule(make_cfg, "dvsgesture", tmp_path, tmp_path / "cache")
    bad = dm._raw["test"][0].data[0]
    np.save(bad, np.zeros((5, 3)))  # three columns instead of x, y, p, t
    with pytest.raises(DataFileError, match=rf"{bad}: cannot read as DVSGesture events"):
        dm.splits["test"][0]


def test_bad_settings_are_config_errors(make_cfg, event_root, tmp_path):
    for bad, match in (("data.encoding=rate", "data.encoding='rate'"), ("data.downsample=0", "data.downsample=0"),
                       ("data.n_time_bins=10", "set exactly one"), ("data.num_steps=null", "data.num_steps=None")):
        with pytest.raises(ConfigError, match=match):
            build_datamodule(make_cfg(*data_overrides("dvsgesture", event_root, tmp_path), bad))


def test_dvsgesture_recipe_net_and_weight_clamp(make_cfg, event_root, tmp_path):
    cfg = make_cfg("experiment=qsnn_dvsgesture", f"data.root={event_root}", f"data.cache_dir={tmp_path}")
    assert (cfg.data.num_steps, cfg.data.eval_steps, cfg.data.time_window_us, cfg.data.downsample) == (100, 600, 3000, 4)
    assert cfg.trainer.gradient_clip_val == 1.0 and cfg.sched.T_max == 735 and cfg.optim.lr == 2.634e-3
    dm = instantiate(cfg.data)
    module = build_module(cfg, dm)
    convs = [m for m in module.net.modules() if isinstance(m, torch.nn.Conv2d)]
    fcs = [m for m in module.net.modules() if isinstance(m, torch.nn.Linear)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(2, 16), (16, 32)]
    assert [(f.in_features, f.out_features) for f in fcs] == [(800, 11)]
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in module.net.modules())

    # the recipe's ClampWeights keeps weights in [-1, 1] after a step, here from weights of 3
    import lightning as L

    from qsnn.run.callbacks import ClampWeights

    cfg.data.num_steps, cfg.data.eval_steps = 4, 4
    dm = instantiate(cfg.data)
    module = build_module(cfg, dm)
    with torch.no_grad():
        for p in module.parameters():
            if p.dim() > 1:
                p.fill_(3.0)
    trainer = L.Trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, callbacks=[ClampWeights()],
                        gradient_clip_val=1.0)
    trainer.fit(module, datamodule=dm)
    weights = [p for p in module.parameters() if p.dim() > 1]
    assert max(float(p.detach().abs().max()) for p in weights) == 1.0


def test_train_entry_point_reports_missing_data(run, tmp_path):
    r = run("train.py", "experiment=qsnn_dvsgesture", f"data.root={tmp_path / 'empty'}", "print_config=false",
            "logger=none", "callbacks=none")
    assert r.returncode == 1, r.stderr[-2000:]
    assert "error: DataFileError: data.root=" in r.stderr and "ibmGestureTrain.tar.gz" in r.stderr
    assert "Traceback" not in r.stderr and "Downloading" not in r.stdout + r.stderr
    assert not (tmp_path / "empty").exists()  # nothing was created, nothing downloaded


def test_clamp_weights_before_the_step_as_the_reference():
    """when=before_step (the DVS recipe, as the reference code): clamp after backward, before the
    optimizer step; the step then moves the weights on from the clamped values."""
    from qsnn.run.callbacks import ClampWeights

    net = torch.nn.Linear(3, 2)
    with torch.no_grad():
        net.weight.fill_(3.0)
    cb = ClampWeights(when="before_step")
    cb.on_train_batch_end(None, net, None, None, 0)
    assert float(net.weight.detach().max()) == 3.0  # not after the step
    cb.on_before_optimizer_step(None, net, None)
    assert float(net.weight.detach().max()) == 1.0 and float(net.bias.detach().abs().max()) < 1.0
    with pytest.raises(ValueError, match="callbacks.clamp_weights.when='later'"):
        ClampWeights(when="later")

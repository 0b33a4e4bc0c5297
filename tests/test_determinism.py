"""Same seed + same config on CPU: bit-identical weights, metrics and history (trainer.deterministic
is on in conf/trainer/cpu.yaml). Rate encoding puts the global RNG in the data path too."""
from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import open_dict

from conftest import TINY
from qsnn.run.runner import train

RUN = [*TINY, "trainer.max_epochs=2", "logger=csv", "data.encoding=rate"]


def run_once(make_cfg, tmp_path: Path, name: str, *extra: str):
    cfg = make_cfg(*RUN, *extra)
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / name)
    summary = train(cfg)
    state = torch.load(tmp_path / name / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    drop = lambda d: {k: v for k, v in d.items() if not k.startswith("time/")}  # noqa: E731 (wall times differ)
    return state["state_dict"], drop(summary["metrics"]), [drop(e) for e in summary["epochs"]]


def test_same_seed_bit_identical(make_cfg, tmp_path):
    w1, m1, h1 = run_once(make_cfg, tmp_path, "a", "seed=7")
    w2, m2, h2 = run_once(make_cfg, tmp_path, "b", "seed=7")
    assert m1 == m2 and h1 == h2
    assert all(torch.equal(w1[k], w2[k]) for k in w1)

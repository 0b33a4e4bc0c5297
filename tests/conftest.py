"""Shared fixtures: compose the real conf/ and run the real entry points with tiny budgets."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

import qsnn.run.config  # noqa: F401  (resolvers)

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
PY = sys.executable
# Overrides that make any training run take a second or two.
TINY = ["trainer.max_epochs=1", "trainer.limit_train_batches=3", "trainer.limit_val_batches=2",
        "trainer.limit_test_batches=2", "print_config=false", "callbacks.progress_bar=null"]

# Triton's CPU interpreter for tests/test_lif_triton.py: triton reads this when it is imported, and
# importing lightning (any test module) imports triton, so it is set here, before any of them
os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


def compose_cfg(overrides=(), config_name="train.yaml", output_dir: Path | None = None):
    """Compose conf/ like Hydra does for a run (HydraConfig set, so ${hydra:...} resolves)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)
    if output_dir is not None:
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(output_dir)
            cfg.hydra.job.override_dirname = ",".join(overrides)
    HydraConfig.instance().set_config(cfg)
    return cfg


@pytest.fixture
def make_cfg(tmp_path):
    def _make(*overrides, config_name="train.yaml"):
        cfg = compose_cfg(overrides, config_name=config_name, output_dir=tmp_path / "run")
        with open_dict(cfg):
            cfg.paths.output_dir = str(tmp_path / "run")
            del cfg.hydra  # like a job's config
        return cfg
    return _make


def run_script(script: str, *args: str, cwd: Path = ROOT, env: dict | None = None, timeout: int = 300):
    """Run src/<script> in a subprocess with the test venv's python."""
    # drop W&B's service handle: a child attaching to this pytest process's service fails to init
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_SERVICE", "WANDB__SERVICE"))}
    e = {**inherited, "WANDB_MODE": "offline", "WANDB_SILENT": "true", **(env or {})}
    return subprocess.run([PY, str(ROOT / "src" / script), *args], cwd=cwd, env=e, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture
def run(tmp_path):
    """run("train.py", *overrides) with logs under tmp_path; returns CompletedProcess."""
    def _run(script, *args, env=None, timeout=300):
        return run_script(script, *args, f"paths.log_dir={tmp_path / 'logs'}", env=env, timeout=timeout)
    return _run


@pytest.fixture(scope="session")
def grid_sweep(tmp_path_factory):
    """A real multirun shared by the report and dashboard tests: quant.bits=4,32 x sched=constant,cosine
    x seed=1,2 (8 jobs of a few batches, CSV logger, 2 at a time): two keys vary, two seeds each."""
    d = tmp_path_factory.mktemp("grid") / "grid_sweep"
    r = run_script("train.py", "-m", "launcher=joblib", "hydra.launcher.n_jobs=2", "quant.bits=4,32",
                   "sched=constant,cosine", "seed=1,2", "logger=csv", "torch_threads=1", f"hydra.sweep.dir={d}",
                   f"paths.log_dir={d.parent / 'logs'}", *TINY, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return d


@pytest.fixture(scope="session")
def event_root(tmp_path_factory):
    """All five tonic event datasets, written once per session (about 3 s, mostly N-MNIST's 20000 files)."""
    from eventfiles import WRITERS

    root = tmp_path_factory.mktemp("events")
    for name, write in WRITERS.items():
        if name == "cifar10dvs":
            pytest.importorskip("dv_processing")
        write(root)
    return root


@pytest.fixture(scope="session")
def idx_root(tmp_path_factory):
    """MNIST-shaped synthetic IDX files under <root>/MNIST/raw and <root>/FashionMNIST/raw."""
    from qsnn.data.synthetic_idx import write_mnist_like

    root = tmp_path_factory.mktemp("idx")
    for name in ("MNIST", "FashionMNIST"):
        write_mnist_like(root / name / "raw")
    return root

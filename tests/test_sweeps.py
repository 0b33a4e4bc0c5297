"""Studies, W&B sweep files, Optuna and the submitit launcher, through the real conf/ and src/train.py."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from conftest import CONF, ROOT, TINY
from qsnn.run.validate import validate

SWEEPS = ROOT / "sweeps"
STUDIES = sorted(p for p in SWEEPS.glob("*.yaml") if p.name != "base.yaml")  # base.yaml: shared, no grid
WANDB_SWEEPS = sorted((SWEEPS / "wandb").glob("*.yaml"))


def compose_study(name: str, overrides=()):
    """Compose like `python src/train.py --config-dir sweeps --config-name <name> <overrides>`."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(SWEEPS), version_base="1.3"):
        return compose(config_name=name, overrides=[f"hydra.searchpath=[file://{CONF}]", *overrides],
                       return_hydra_config=True)


def compose_train(overrides):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="train.yaml", overrides=list(overrides), return_hydra_config=True)


def _validate(cfg):
    from omegaconf import open_dict
    from hydra.core.hydra_config import HydraConfig

    HydraConfig.instance().set_config(cfg)  # ${hydra:...} in the logger config resolves
    with open_dict(cfg):
        del cfg.hydra
    validate(cfg)


def test_there_are_studies():
    assert {"standard.yaml", "quick.yaml", "grid.yaml"} <= {p.name for p in STUDIES}
    assert len(WANDB_SWEEPS) >= 3


def protocol_jobs(cfg) -> list[list[str]]:
    """Every arm at its extreme tuning values (first and last trial) with a confirmation seed."""
    from qsnn.study.protocol import Protocol, arm_id, confirm_job, trial_params

    p = Protocol.from_cfg(cfg.protocol)
    jobs = []
    for arm in p.arm_list():
        trials = trial_params(p, arm)
        assert len(trials) == p.trials, arm_id(arm)
        jobs += [confirm_job(p, arm, t, p.n_max)["overrides"] for t in (trials[0], trials[-1])]
    return jobs


@pytest.mark.parametrize("study", STUDIES, ids=lambda p: p.stem)
def test_study_composes_with_every_grid_value(study):
    cfg = compose_study(study.stem)
    if cfg.get("protocol") is not None:  # a protocol study: its arms and tuning draws instead of a grid
        for job in protocol_jobs(cfg):
            _validate(compose_study(study.stem, job))
        return
    params = cfg.hydra.sweeper.params
    assert params, f"{study.name}: no grid in hydra.sweeper.params"
    assert "seed" in params, f"{study.name}: sweep seed explicitly so each job's seed is in its overrides"
    assert str(cfg.hydra.mode).endswith("MULTIRUN")
    # job i takes the i-th value of every key (the last when a key has fewer): every value of the
    # grid gets composed and validated in max(len) compositions instead of the full product
    values = {k: [v.strip() for v in str(spec).split(",")] for k, spec in params.items()}
    for i in range(max(map(len, values.values()))):
        _validate(compose_study(study.stem, [f"{k}={vs[min(i, len(vs) - 1)]}" for k, vs in values.items()]))


def test_base_has_no_grid_so_studies_inherit_none():
    cfg = compose_study("base")
    assert not cfg.hydra.sweeper.get("params")
    assert cfg.torch_threads == 1 and cfg.hydra.launcher._target_.endswith("JoblibLauncher")


def test_grid_study_is_the_54_job_grid():
    params = compose_study("grid").hydra.sweeper.params
    sizes = {k: len(str(v).split(",")) for k, v in params.items()}
    assert sizes == {"quant.bits": 2, "sched": 3, "surrogate": 3, "seed": 3}
    assert sorted(str(params["quant.bits"]).split(",")) == ["32", "4"]


@pytest.mark.parametrize("path", WANDB_SWEEPS, ids=lambda p: p.stem)
def test_wandb_sweep_file_parses_and_composes(path):
    spec = yaml.safe_load(path.read_text())
    assert spec["method"] in {"grid", "random", "bayes"}
    assert spec["metric"]["name"] == "val/acc_best"
    assert "${args_no_hyphens}" in spec["command"] and "${program}" in spec["command"]
    assert (ROOT / spec["program"]).is_file()
    fixed = [a for a in spec["command"] if "=" in a and not a.startswith("$")]
    values = {k: p["values"] if "values" in p else [p["value"]] if "value" in p else [p["min"], p["max"]]
              for k, p in spec["parameters"].items()}
    for i in range(max(map(len, values.values()))):  # as above: every value, max(len) compositions
        _validate(compose_train([*fixed, *(f"{k}={vs[min(i, len(vs) - 1)]}" for k, vs in values.items())]))


def test_methods_match_issue():
    methods = {yaml.safe_load(p.read_text())["method"] for p in WANDB_SWEEPS}
    assert methods == {"grid", "random", "bayes"}


def test_optuna_search_survives_a_nan_trial(run, tmp_path):
    """3 TPE trials; loss.sparsity.weight=1e30 (from the first step) makes the gradient norm
    overflow, the divergence guard stops that trial, src/train.py returns None and the sweeper
    records it FAILED; the study completes. (A NaN value is refused by validation now.)"""
    sweep = tmp_path / "optuna"
    r = run("train.py", "hparams_search=optuna", "hydra.sweeper.n_trials=3", "hydra.sweeper.sampler.seed=0",
            "hydra.sweeper.sampler.n_startup_trials=3", "loss.sparsity.weight=choice(0.0,1e30)",
            "loss.sparsity.start=0", "loss.sparsity.end=0", "logger=csv",
            f"hydra.sweep.dir={sweep}", *TINY, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    summaries = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/summary.json"))]
    assert len(summaries) == 3
    status = sorted(s["status"] for s in summaries)
    assert status.count("failed") >= 1 and status.count("ok") >= 1, status
    failed = [s for s in summaries if s["status"] == "failed"]
    weight = {float(o.split("=")[1]) for s in failed for o in s["overrides"] if o.startswith("loss.sparsity.weight=")}
    assert weight == {1e30} and all("Diverged" in s["error"] for s in failed)
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["best_params"]["loss.sparsity.weight"] == 0.0
    assert best["best_value"] == max(s["metrics"]["val/acc_best"] for s in summaries if s["status"] == "ok")


def test_submitit_local_launcher_runs_a_job(run, tmp_path):
    """launcher=submitit_local: the job runs in a submitit subprocess and writes its summary."""
    sweep = tmp_path / "submitit"
    r = run("train.py", "-m", "launcher=submitit_local", "seed=7", "logger=csv", "torch_threads=1",
            f"hydra.sweep.dir={sweep}", *TINY, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    s = json.loads((sweep / "0" / "summary.json").read_text())
    assert s["status"] == "ok" and "seed=7" in s["overrides"] and s["seed"] == 7
    assert 0.0 <= s["metrics"]["test/acc"] <= 1.0
    assert list((sweep / ".submitit").iterdir()), "submitit wrote no job folders: another launcher ran"

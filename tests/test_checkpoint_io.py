"""Checkpoints a user names are read safely (a pickle that runs code is refused, nothing runs) and
checked against the config: train.py ckpt_path, eval.py (same run config, one `error:` line),
and export refuses what it cannot express before the test pass."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from conftest import PY, ROOT, TINY
from qsnn.errors import CheckpointError, ConfigError
from qsnn.run.checkpoint_io import load_checkpoint
from qsnn.run.runner import evaluate, train
from test_resume import job_env

FAST = [*TINY, "logger=csv"]
EVAL = ["trainer.limit_test_batches=2"]


class MakesMarker:
    """Unpickling this calls open(marker, "w"): a stand-in for any code a checkpoint could run."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


@pytest.fixture
def malicious(tmp_path) -> tuple[Path, Path]:
    marker = tmp_path / "marker"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "epoch": 0, "payload": MakesMarker(marker)}, path)
    return path, marker


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A finished 4-bit run (its dir holds config_resolved.yaml and checkpoints/)."""
    from test_bad_inputs import job_cfg

    out = tmp_path_factory.mktemp("trained") / "run"
    assert train(job_cfg(out, *FAST))["status"] == "ok"
    return out


def eval_cfg(make_cfg, ckpt, *overrides):
    return make_cfg(*EVAL, f"ckpt_path={ckpt}", *overrides, config_name="eval.yaml")


def test_malicious_checkpoint_refused_by_train(malicious, make_cfg):
    path, marker = malicious
    with pytest.raises(CheckpointError) as e:
        train(make_cfg(*FAST, f"ckpt_path={path}"))
    msg = str(e.value)
    assert "refused" in msg and "io.open" in msg and "trust_checkpoint=true" in msg and "\n" not in msg
    assert not marker.exists()
    # the file really runs code when unpickled: the test above is not vacuous
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_trust_checkpoint_is_the_explicit_opt_in(malicious):
    path, marker = malicious
    load_checkpoint(path, trust=True)
    assert marker.exists()


def test_malicious_checkpoint_refused_by_eval_py(malicious, tmp_path):
    path, marker = malicious
    r = subprocess.run([PY, str(ROOT / "src/eval.py"), f"ckpt_path={path}", *EVAL, f"paths.log_dir={tmp_path}"],
                       cwd=ROOT, env=job_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 1
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: CheckpointError:") and "trust_checkpoint" in lines[0], \
        r.stderr[-2000:]
    assert not marker.exists()


def test_our_checkpoints_load_safely(trained):
    ckpt = load_checkpoint(trained / "checkpoints" / "last.ckpt")
    assert ckpt["hyper_parameters"]["bits"] == 4 and torch.serialization.get_unsafe_globals_in_checkpoint(
        trained / "checkpoints" / "last.ckpt") == []


def test_eval_refuses_other_bits_naming_the_key(trained, make_cfg, tmp_path):
    ckpt = trained / "checkpoints" / "last.ckpt"
    with pytest.raises(CheckpointError, match=r"quant\.bits: 4 -> 2") as e:
        evaluate(eval_cfg(make_cfg, ckpt, "quant.bits=2"))
    assert "config_resolved.yaml" in str(e.value)
    alone = tmp_path / "alone.ckpt"  # outside its run dir: the bit width saved in the checkpoint
    shutil.copy(ckpt, alone)
    with pytest.raises(CheckpointError, match=r"quant\.bits: 4 -> 2"):
        evaluate(eval_cfg(make_cfg, alone, "quant.bits=2"))
    with pytest.raises(CheckpointError, match=r"model\.hidden: \[128\] -> \[64\]"):
        evaluate(eval_cfg(make_cfg, ckpt, "model.hidden=[64]"))
    # the run's config is the base now: any trained value given, a group choice or the seed, must be the run's
    with pytest.raises(CheckpointError, match=r"sched: cosine -> cosine_restart, seed: 42 -> 7; leave them out"):
        evaluate(eval_cfg(make_cfg, ckpt, "sched=cosine_restart", "seed=7"))


def same_test(summary: dict, run_dir: Path) -> None:
    """The eval summary holds the run's own test metrics (one epoch: the tested best is last.ckpt)."""
    run = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "ok" and summary["bits"] == run["bits"]
    assert summary["metrics"]["test/acc"] == run["metrics"]["test/acc"]
    assert summary["metrics"]["test/loss"] == pytest.approx(run["metrics"]["test/loss"], rel=1e-6)


def test_eval_of_a_single_run_needs_only_ckpt_path(trained, make_cfg):
    ckpt = trained / "checkpoints" / "last.ckpt"
    same_test(evaluate(make_cfg(f"ckpt_path={ckpt}", config_name="eval.yaml")), trained)
    # the training overrides retyped (equal values) and options passed by habit still work
    cfg = make_cfg(f"ckpt_path={ckpt}", "sched=cosine", "quant.bits=4", "logger=none", "callbacks=none",
                   "trainer.limit_test_batches=2", "cost.max_batches=1", config_name="eval.yaml")
    same_test(evaluate(cfg), trained)


def test_eval_py_of_a_multirun_job_needs_only_ckpt_path(grid_sweep, run, tmp_path):
    """Issue 22: a 32-bit cosine job of a multirun, where eval.yaml's defaults say 4 bits and constant."""
    job = next(d for d in sorted(grid_sweep.iterdir()) if (d / "summary.json").is_file() and
               {"quant.bits=32", "sched=cosine"} <= set(json.loads((d / "summary.json").read_text())["overrides"]))
    r = run("eval.py", f"ckpt_path={job / 'checkpoints' / 'last.ckpt'}")
    assert r.returncode == 0, r.stderr[-2000:]
    (out,) = (tmp_path / "logs" / "eval" / "runs").iterdir()
    same_test(json.loads((out / "summary.json").read_text()), job)


def test_eval_of_a_stacked_job_needs_only_ckpt_path(make_cfg, tmp_path):
    from qsnn.stacked.group import train_group
    from test_stacked import BASE, job_cfg

    ov = [o for o in BASE if not o.startswith("trainer.max_epochs=")] + ["trainer.max_epochs=1", "model.hidden=[16]"]
    infos: list = []
    cfgs = [job_cfg([*ov, f"seed={s}"], tmp_path / f"s{s}", infos) for s in (1, 2)]
    assert [s["status"] for s in train_group(cfgs, infos)] == ["ok", "ok"]
    same_test(evaluate(make_cfg(f"ckpt_path={tmp_path / 's2' / 'checkpoints' / 'last.ckpt'}",
                                config_name="eval.yaml")), tmp_path / "s2")


def tampered(trained: Path, tmp_path: Path, key: str, value) -> Path:
    """A copy of the run whose config_resolved.yaml has ``key`` set to ``value``."""
    import yaml

    out = tmp_path / "run"
    shutil.copytree(trained, out)
    saved = yaml.safe_load((out / "config_resolved.yaml").read_text())
    *parents, leaf = key.split(".")
    node = saved
    for k in parents:
        node = node[int(k)] if isinstance(node, list) else node[k]
    node[leaf] = value
    (out / "config_resolved.yaml").write_text(yaml.safe_dump(saved))
    return out / "checkpoints" / "last.ckpt"


def test_eval_py_refuses_a_run_config_naming_another_callable(trained, run, tmp_path):
    """config_resolved.yaml is input like the checkpoint: a _target_ conf/ never names is refused
    before anything is imported or built."""
    marker = tmp_path / "marker"
    ckpt = tampered(trained, tmp_path, "data", {"_target_": "os.system", "_args_": [f"touch {marker}"]})
    r = run("eval.py", f"ckpt_path={ckpt}")
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 1 and len(lines) == 1, r.stderr[-2000:]
    assert lines[0].startswith("error: CheckpointError: ") and "data._target_='os.system' is not allowed" in lines[0]
    assert "qsnn.data.digits.DigitsDataModule" in lines[0] and "trust_checkpoint=true" in lines[0]
    assert not marker.exists()


def test_trust_checkpoint_runs_what_the_run_config_names(trained, make_cfg, tmp_path):
    """The refusal is what stops it: with trust_checkpoint=true (the opt-in for a file you trust, e.g.
    a run of your own model class) the file's callable runs (shutil.copyfile writes the marker)."""
    marker = tmp_path / "marker"
    copy = {"_target_": "shutil.copyfile", "_args_": [str(trained / "config_resolved.yaml"), str(marker)]}
    ckpt = tampered(trained, tmp_path, "data", copy)
    with pytest.raises(CheckpointError, match="data._target_='shutil.copyfile' is not allowed"):
        evaluate(make_cfg(f"ckpt_path={ckpt}", config_name="eval.yaml"))
    assert not marker.exists()
    with pytest.raises(AttributeError):  # it ran; what it returned is no data module
        evaluate(make_cfg(f"ckpt_path={ckpt}", "trust_checkpoint=true", config_name="eval.yaml"))
    assert marker.exists()


@pytest.mark.parametrize("key,value,expect", [
    ("model._target_", "builtins.eval", "model._target_='builtins.eval' is not allowed: use qsnn.nn.models"),
    ("trainer.plugins.0._target_", "os.system", "trainer.plugins.0._target_='os.system' is not allowed"),
    ("model.hidden", "${oc.decode:'[8]'}", "a resolved config holds no interpolations"),
])
def test_eval_refuses_a_tampered_run_config(trained, make_cfg, tmp_path, key, value, expect):
    with pytest.raises(CheckpointError, match=re.escape(expect)) as e:
        evaluate(make_cfg(f"ckpt_path={tampered(trained, tmp_path, key, value)}", config_name="eval.yaml"))
    assert "\n" not in str(e.value) and "trust_checkpoint=true" in str(e.value)


@pytest.mark.parametrize("content,expect", [(b"not a checkpoint at all\n", "cannot read checkpoint"),
                                            (None, "not a Lightning checkpoint"),
                                            ("dir", "no such checkpoint file")])
def test_eval_wrong_files_one_line(content, expect, make_cfg, tmp_path):
    path = tmp_path / "x.ckpt"
    if content == "dir":
        path.mkdir()
    elif content is None:
        torch.save({"weights": torch.zeros(3)}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=expect) as e:
        evaluate(eval_cfg(make_cfg, path))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("overrides,expect", [(["model.neuron=sigma_delta"], "model.neuron=sigma_delta"),
                                              (["model=csnn", "model.channels=[4]", "model.kernel_size=3"],  # digits are 8x8
                                               "model.batchnorm=true")])
def test_export_refused_before_the_test_pass(overrides, expect, make_cfg, tmp_path):
    # the checkpoint does not exist: the export check must come first
    with pytest.raises(ConfigError, match=expect):
        evaluate(eval_cfg(make_cfg, tmp_path / "missing.ckpt", *overrides, "export=nir"))


def test_export_of_a_sigma_delta_net_is_one_error(make_cfg):
    from qsnn.cost.export import export
    from qsnn.run.build import build_datamodule, build_net

    cfg = make_cfg(*FAST, "model.neuron=sigma_delta")
    dm = build_datamodule(cfg)
    with pytest.raises(ConfigError, match="leaky"):
        export(build_net(cfg, dm), "nir", Path(os.devnull), list(dm.input_shape))


def test_resume_ckpt_path_last_is_read_safely(trained, tmp_path):
    """resume reads last.ckpt with weights_only too: a poisoned last.ckpt is refused, the run kept."""
    from test_bad_inputs import job_cfg
    from test_run_dir import all_files

    out = tmp_path / "run"
    shutil.copytree(trained, out)
    marker = tmp_path / "marker"
    torch.save({"state_dict": {}, "payload": MakesMarker(marker)}, out / "checkpoints" / "last.ckpt")
    before = all_files(out)
    with pytest.raises(CheckpointError, match="trust_checkpoint"):
        train(job_cfg(out, *FAST, "trainer.max_epochs=2", "resume=true"))
    assert not marker.exists() and all_files(out) == before

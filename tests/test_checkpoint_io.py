"""Checkpoints a user names are read safely (a pickle that runs code is refused, nothing runs) and
checked against the config: train.py ckpt_path, eval.py (same run config, one `error:` line),
and export refuses what it cannot express before the test pass."""
from __future__ import annotations

import json
import os
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
EVAL = ["+trainer.limit_test_batches=2"]


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


def test_eval_reproduces_the_runs_own_test_accuracy(trained, make_cfg):
    """One epoch trained: the tested best checkpoint is last.ckpt; eval on the same test batches gives
    the run's own test metrics."""
    run = json.loads((trained / "summary.json").read_text())
    summary = evaluate(eval_cfg(make_cfg, trained / "checkpoints" / "last.ckpt", "sched=cosine"))
    assert summary["metrics"]["test/acc"] == run["metrics"]["test/acc"]
    assert summary["metrics"]["test/loss"] == pytest.approx(run["metrics"]["test/loss"], rel=1e-6)


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

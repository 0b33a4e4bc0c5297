"""One owner of a run's files: a refused re-run or resume leaves every file of the run dir
byte-identical (summary.json, config_resolved.yaml, checkpoints, .hydra/, wandb/); resume compares
configs before building anything; one job per output dir (lock); last.ckpt after every epoch;
a moved run dir resumes with its own paths; W&B online without a server falls back quickly."""
from __future__ import annotations

import hashlib
import json
import re
import os
import shutil
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import lightning as L
import pytest
import torch

from conftest import PY, ROOT, TINY
from qsnn.errors import CheckpointError, ResumeRefused, RunDirBusy
from qsnn.run.checkpoint_io import RunCheckpoint
from qsnn.run.run_dir import locked
from qsnn.run.runner import train
from test_bad_inputs import job_cfg
from test_resume import job_env

# 2 short epochs per job; the finished sweep is copied by every test that changes it
JOB = [*TINY, "trainer.max_epochs=2", "torch_threads=1"]


def all_files(d: Path) -> dict[str, str]:
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """A finished two-job multirun (4 and 8 bits) made by the real src/train.py."""
    s = tmp_path_factory.mktemp("finished") / "sweep"
    r = subprocess.run([PY, str(ROOT / "src/train.py"), "-m", "quant.bits=4,8", *JOB, f"hydra.sweep.dir={s}",
                        f"paths.log_dir={s.parent / 'logs'}"], cwd=ROOT, env=job_env(), capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    for job in ("0", "1"):
        assert json.loads((s / job / "summary.json").read_text())["status"] == "ok"
        assert (s / job / ".hydra" / "overrides.yaml").is_file() and list((s / job / "wandb").glob("offline-run-*"))
    return s


def copy_job(sweep: Path, tmp_path: Path, job: str = "0") -> Path:
    out = tmp_path / "run"
    shutil.copytree(sweep / job, out)
    return out


def test_refused_resume_leaves_every_file_byte_identical(sweep):
    d = sweep / "0"
    before = all_files(d)
    assert any(k.startswith(".hydra/") for k in before) and any(k.startswith("wandb/") for k in before)
    for extra, expect in ((["trainer.max_epochs=3", "quant.bits=32", "optim.lr=0.1", "resume=true"],
                           ["quant.bits: 4 -> 32", "optim.lr: 0.005 -> 0.1"]),
                          (["quant.bits=32"], ["already holds a run"])):  # a re-run without resume=true
        r = subprocess.run([PY, str(ROOT / "src/train.py"), *JOB, *extra, f"hydra.run.dir={d}"], cwd=ROOT,
                           env=job_env(), capture_output=True, text=True, timeout=300)
        assert r.returncode == 1, r.stderr[-3000:]
        errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
        assert all(e in errors[0] for e in expect), errors[0]
        assert "trainer.max_epochs" not in errors[0].split(";")[0]  # a safe key is not listed as a change
        assert all_files(d) == before  # .hydra/*.yaml too: Hydra no longer writes them before the job


@pytest.mark.parametrize("change", ["quant.bits=2", "optim=sgd", "truncated last.ckpt"])
def test_refused_resume_in_process(change, sweep, tmp_path):
    out = copy_job(sweep, tmp_path)
    extra = []
    if change.startswith("truncated"):
        last = out / "checkpoints" / "last.ckpt"
        last.write_bytes(last.read_bytes()[:3000])
    else:
        extra = [change]
    before = all_files(out)
    with pytest.raises((ResumeRefused, CheckpointError)) as e:
        train(job_cfg(out, "quant.bits=4", *JOB, "trainer.max_epochs=3", "resume=true", *extra))
    expect = {"quant.bits=2": "quant.bits: 4 -> 2", "optim=sgd": "optim: adam -> sgd"}.get(change, "cannot read")
    assert expect in str(e.value) and "\n" not in str(e.value)
    assert all_files(out) == before


def test_resume_with_more_epochs_in_a_moved_dir(sweep, tmp_path):
    """trainer.max_epochs may change; the dir was moved: the run continues with its own paths."""
    first = copy_job(sweep, tmp_path)
    moved = tmp_path / "moved"
    first.rename(moved)
    summary = train(job_cfg(moved, "quant.bits=4", *JOB, "trainer.max_epochs=3", "resume=true"))
    assert summary["status"] == "ok" and [e["epoch"] for e in summary["epochs"]] == [0, 1, 2]
    assert summary["resumed_from"] == str(moved / "checkpoints" / "last.ckpt")
    state = torch.load(moved / "checkpoints" / "last.ckpt", weights_only=True)["callbacks"]
    paths = [v for cb in state.values() if isinstance(cb, dict) for k, v in cb.items() if k.endswith("_path") and v]
    assert paths and all(p.startswith(str(moved)) for p in paths), paths


def test_checkpoint_paths_follow_the_run_dir(tmp_path):
    old, new = "/old/run/checkpoints", str(tmp_path / "checkpoints")
    cb = RunCheckpoint(dirpath=new, monitor="val/acc", mode="max", save_last=True)
    cb.load_state_dict({"monitor": "val/acc", "best_model_score": torch.tensor(0.5), "dirpath": old,
                        "best_model_path": f"{old}/epoch_001.ckpt", "current_score": torch.tensor(0.5),
                        "best_k_models": {f"{old}/epoch_001.ckpt": torch.tensor(0.5)},
                        "kth_best_model_path": f"{old}/epoch_001.ckpt", "kth_value": torch.tensor(0.5),
                        "last_model_path": f"{old}/last.ckpt"})
    assert cb.best_model_path == f"{new}/epoch_001.ckpt" and cb.last_model_path == f"{new}/last.ckpt"
    assert list(cb.best_k_models) == [f"{new}/epoch_001.ckpt"]


class LastSeen(L.Callback):
    """Records, at the start of each epoch after the first, the epoch stored in last.ckpt."""

    seen: list[int] = []

    def on_train_epoch_start(self, trainer, pl_module):
        last = Path(trainer.checkpoint_callback.dirpath) / "last.ckpt"
        if trainer.current_epoch > 0:
            LastSeen.seen.append(torch.load(last, weights_only=True)["epoch"])


def test_last_checkpoint_after_every_epoch(make_cfg):
    # monitor "epoch" in mode min: epoch 0 stays the best, so no top-k save after it
    LastSeen.seen = []
    summary = train(make_cfg(*TINY, "trainer.max_epochs=3", "logger=csv", "callbacks.model_checkpoint.monitor=epoch",
                             "callbacks.model_checkpoint.mode=min", "+callbacks.last_seen._target_=test_run_dir.LastSeen"))
    assert summary["status"] == "ok"
    assert LastSeen.seen == [0, 1]  # before each epoch, last.ckpt holds the one just finished


@contextmanager
def held_by_another_process(out: Path):
    """``out`` locked (qsnn.run.run_dir.locked) by another process while the block runs."""
    holder = subprocess.Popen([PY, "-c", "import sys, time; from qsnn.run.run_dir import locked\n"
                               f"with locked({str(out)!r}):\n    print('locked', flush=True); time.sleep(120)"],
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield
    finally:
        holder.kill()  # SIGKILL: the kernel releases the lock with the process (no stale lock)
        holder.wait()


def test_second_job_on_a_busy_dir_is_refused(tmp_path):
    out = tmp_path / "run"
    with held_by_another_process(out):
        with pytest.raises(RunDirBusy, match="in use by another running job"):
            train(job_cfg(out, *TINY, "logger=none"))
        assert not list(out.iterdir())  # the refused job wrote nothing, not even a failed summary
    with locked(out):
        pass


def test_lock_is_released_when_the_job_fails(tmp_path, make_cfg):
    cfg = make_cfg(*TINY, "logger=none", "data=mnist", f"data.root={tmp_path / 'nowhere'}")
    with pytest.raises(Exception):
        train(cfg)
    with locked(Path(cfg.paths.output_dir)):
        pass


def test_sweep_refuses_the_changed_job_and_runs_the_others(sweep, tmp_path):
    s = tmp_path / "sweep"
    shutil.copytree(sweep, s)
    before = all_files(s / "1")
    r = subprocess.run([PY, str(ROOT / "src/train.py"), "-m", "quant.bits=4,2", *JOB, "trainer.max_epochs=3",
                        "resume=true", f"hydra.sweep.dir={s}", f"paths.log_dir={tmp_path / 'logs'}"], cwd=ROOT,
                       env=job_env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert re.search(r"\njob 1 .*quant\.bits=2 .*: failed: ResumeRefused: .*quant\.bits: 8 -> 2", r.stdout), r.stdout
    done = json.loads((s / "0" / "summary.json").read_text())
    assert done["status"] == "ok" and len(done["epochs"]) == 3
    after = all_files(s / "1")
    log = (s / "1" / "train.log").read_text()
    assert "quant.bits: 8 -> 2" in log.splitlines()[-1]  # the job log ends with why it was refused
    after.pop("train.log"), before.pop("train.log")
    assert after == before


def test_wandb_online_without_server_falls_back_offline_quickly(make_cfg, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("WANDB_API_KEY", "0" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens: like no network
    cfg = make_cfg(*TINY, "logger=wandb", "logger.wandb.settings.init_timeout=3")
    t0 = time.monotonic()
    summary = train(cfg)
    assert summary["status"] == "ok" and time.monotonic() - t0 < 60
    out = Path(cfg.paths.output_dir)
    run_id = (out / "wandb_run_id").read_text().strip()
    runs = list((out / "wandb").glob(f"offline-run-*-{run_id}"))
    assert len(runs) == 1 and list(runs[0].glob("run-*.wandb"))  # the job keeps its W&B record, same id
    assert [p.name for p in (out / "wandb").glob("*run-*")] == [runs[0].name]  # no dir left by the failed attempt


def immutable_dir(tmp_path: Path):
    """A dir this process cannot write, as root too (root ignores chmod): chattr +i; None where unsupported."""
    d = tmp_path / "immutable"
    d.mkdir()
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(d)], capture_output=True).returncode:
        return None
    return d


def test_unwritable_output_dir_is_one_line_before_hydra_logging(tmp_path):
    """Not "ValueError: Unable to configure handler 'file'": the path and the OS reason, exit 1. The dir
    is made immutable (root ignores chmod); without chattr, a file stands where the dir should be."""
    from qsnn.errors import ConfigError
    from qsnn.run.run_dir import check_writable

    parent = immutable_dir(tmp_path)
    where, why = (parent / "run", "Operation not permitted") if parent else (tmp_path / "a_file", "a file is there")
    if parent is None:
        where.write_text("")
    try:
        r = subprocess.run([PY, str(ROOT / "src/train.py"), *TINY, f"hydra.run.dir={where}"], cwd=ROOT,
                           env=job_env(), capture_output=True, text=True, timeout=300)
    finally:
        if parent is not None:
            subprocess.run(["chattr", "-i", str(parent)])
    assert r.returncode == 1 and "Traceback" not in r.stderr and "Unable to configure handler" not in r.stderr
    (line,) = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert line.startswith(f"error: ConfigError: hydra.run.dir={where}: cannot write there ({why}") and \
        line.endswith("choose another hydra.run.dir, or make it writable"), r.stderr
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match=r"hydra.sweep.dir=.*/file: cannot write there \(a file is there, not a dir"):
        check_writable(tmp_path / "file", "hydra.sweep.dir")

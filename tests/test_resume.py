"""A multirun killed with SIGKILL mid-job, re-launched with resume=true: the finished job is
skipped, the killed one continues from last.ckpt in the same W&B run, and it ends bit-identical
(weights, metrics, history, LR per step) to an uninterrupted run of the same seed."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import torch

from conftest import PY, ROOT
from qsnn.run.runner import train
from qsnn.run.wandb_offline import read_run

# 3 short epochs of digits: killed just after the first checkpoint, two epochs are left to resume
RUN = ["trainer.max_epochs=3", "trainer.limit_train_batches=4", "trainer.limit_val_batches=2",
       "trainer.limit_test_batches=2", "print_config=false", "callbacks.progress_bar=null",
       "torch_threads=1"]  # bit-identity needs the same thread count (float reduction order) in both runs


def job_env() -> dict[str, str]:
    # not WANDB_SERVICE: W&B in this pytest process set it, and a job must start its own W&B service
    return {**{k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}, "WANDB_MODE": "offline",
            "WANDB_SILENT": "true"}


def launch(sweep_dir: Path, *extra: str) -> subprocess.Popen:
    env = job_env()
    args = [PY, str(ROOT / "src/train.py"), "-m", "seed=1,2", *RUN, f"hydra.sweep.dir={sweep_dir}",
            f"paths.log_dir={sweep_dir.parent / 'logs'}", *extra]
    # own session: the kill also takes W&B's service process with it, like a node going down
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


def wandb_status(run_dir: Path, wait_s: float = 30) -> str | None:
    """The status our runner put in the W&B run summary (W&B's service may still be flushing the file)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            status = read_run(next(run_dir.glob("run-*.wandb")))["summary"].get("status")
        except Exception:  # no file yet, or a record still being written
            status = None
        if status is not None or time.monotonic() > deadline:
            return status
        time.sleep(0.2)


def weights(ckpt: Path) -> dict[str, torch.Tensor]:
    return torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]


def comparable(summary: dict) -> dict:
    drop = lambda d: {k: v for k, v in d.items() if not k.startswith("time/")}  # noqa: E731 (wall times differ)
    return {"metrics": drop(summary["metrics"]), "epochs": [drop(e) for e in summary["epochs"]],
            "lr": summary["lr"]}


def test_killed_multirun_resumes_bit_identical(tmp_path, make_cfg):
    sweep = tmp_path / "sweep"
    proc = launch(sweep)
    last = sweep / "1" / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 240
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    out = proc.communicate()[0]
    assert last.exists(), out[-3000:]
    assert not (sweep / "1" / "summary.json").exists(), "job 1 finished before the kill: nothing to resume"
    first = json.loads((sweep / "0" / "summary.json").read_text())
    assert first["status"] == "ok"
    mtime0 = (sweep / "0" / "summary.json").stat().st_mtime_ns
    killed_at = torch.load(last, map_location="cpu", weights_only=True)["epoch"]

    proc = launch(sweep, "resume=true")
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, out[-3000:]

    # the finished job was skipped, not re-run
    assert (sweep / "0" / "summary.json").stat().st_mtime_ns == mtime0
    resumed = json.loads((sweep / "1" / "summary.json").read_text())
    assert resumed["status"] == "ok" and resumed["resumed_from"].endswith("last.ckpt")
    assert [e["epoch"] for e in resumed["epochs"]] == [0, 1, 2]
    assert killed_at < 2

    # same W&B run: two offline run dirs (before and after the kill), one run id
    run_id = (sweep / "1" / "wandb_run_id").read_text().strip()
    runs = sorted((sweep / "1" / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and all(r.name.endswith(run_id) for r in runs)
    assert wandb_status(runs[-1]) == "ok"

    # an uninterrupted run of the same job (in-process; the logger does not touch the numbers)
    cfg = make_cfg("seed=2", *RUN, "logger=csv")
    ref = train(cfg)
    assert comparable(resumed) == comparable(ref)
    a, b = weights(last), weights(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_resume_without_last_ckpt_continues_from_the_newest_intact_checkpoint(tmp_path, make_cfg, caplog):
    """last.ckpt missing (its write failed on a full disk) but epoch_000.ckpt intact: resume=true goes on
    from that one and says so (not "nothing to resume"); a newer broken checkpoint is passed over."""
    short = [*RUN, "logger=csv", "trainer.max_epochs=1"]
    cfg = make_cfg(*short)
    assert train(cfg)["status"] == "ok"
    ckpts = Path(cfg.paths.output_dir) / "checkpoints"
    (ckpts / "last.ckpt").unlink()
    (ckpts / "epoch_009.ckpt").write_bytes((ckpts / "epoch_000.ckpt").read_bytes()[:4000])  # newer, truncated
    with caplog.at_level("INFO", logger="qsnn"):
        resumed = train(make_cfg(*short, "trainer.max_epochs=2", "resume=true"))
    assert resumed["status"] == "ok" and resumed["resumed_from"] == str(ckpts / "epoch_000.ckpt")
    assert [e["epoch"] for e in resumed["epochs"]] == [0, 1]
    assert f"no last.ckpt in {ckpts}: resuming from epoch_000.ckpt, the newest intact checkpoint there" in caplog.text
    assert "not resuming from" in caplog.text and "nothing to resume" not in caplog.text

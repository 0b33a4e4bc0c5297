"""Ctrl-C on a multirun, as a terminal sends it (SIGINT to the whole process group: the command, its
worker processes, W&B's services), with joblib and with the stacked launcher: one line naming the
sweep dir, exit 130, no traceback, and every job that was running has a summary.json saying
``interrupted`` with its checkpoints intact; a job still queued does not start. A study:
tests/test_study.py; SIGTERM on a single run: tests/test_bad_inputs.py."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from conftest import PY, ROOT
from test_resume import job_env

# randman jobs that would run for minutes: interrupted after each running job's first checkpoint
LONG = ["data=randman", "trainer.max_epochs=500", "print_config=false", "torch_threads=1"]


def ctrl_c(sweep: Path, running: list[str], *args: str) -> tuple[int, str, str]:
    where = f"hydra.sweep.dir={sweep}" if "-m" in args else f"hydra.run.dir={sweep}"
    proc = subprocess.Popen([PY, str(ROOT / "src/train.py"), *args, *LONG, where,
                             f"paths.log_dir={sweep.parent / 'logs'}"], cwd=ROOT, env=job_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 300
    while (not all((sweep / j / "checkpoints" / "last.ckpt").is_file() for j in running)
           and proc.poll() is None and time.monotonic() < deadline):
        time.sleep(0.1)
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=240)
    return proc.returncode, out, err


def assert_interrupted(sweep: Path, running: list[str], rc: int, out: str, err: str, what="sweep dir") -> None:
    assert rc == 130, err[-3000:]
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines == [f"interrupted: continue with resume=true ({what} {sweep})"], err[-3000:]
    assert "Traceback" not in out + err and "KeyboardInterrupt" not in out + err
    for j in running:
        summary = json.loads((sweep / j / "summary.json").read_text())
        assert summary["status"] == "interrupted" and "resume=true" in summary["error"], (j, summary)
        assert "epoch" in torch.load(sweep / j / "checkpoints" / "last.ckpt", weights_only=True)  # intact


@pytest.mark.parametrize("launcher,args,running,queued", [
    ("joblib", ["seed=1,2,3"], ["0", "1"], ["2"]),  # 2 workers: job 2 waits in the queue
    ("stacked", ["quant.bits=4,32", "seed=1,2"], ["0", "1", "2", "3"], []),  # 2 groups of 2 seeds, 2 workers
])
def test_ctrl_c_on_a_multirun(launcher, args, running, queued, tmp_path):
    sweep = tmp_path / "sweep"
    rc, out, err = ctrl_c(sweep, running, "-m", f"launcher={launcher}", "hydra.launcher.n_jobs=2", *args)
    assert_interrupted(sweep, running, rc, out, err)
    for j in queued:  # never started: nothing of it to resume, nothing claimed as run
        assert not (sweep / j / "summary.json").exists() and not (sweep / j / "config_resolved.yaml").exists()


def test_ctrl_c_on_a_single_run(tmp_path):
    run = tmp_path / "run"
    rc, out, err = ctrl_c(run, ["."])
    assert_interrupted(run, ["."], rc, out, err, what="output dir")

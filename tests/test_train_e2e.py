"""The README's multirun, end to end: two jobs, two offline W&B runs, grouped, tagged, full config."""
from __future__ import annotations

import json
import re

from conftest import TINY
from qsnn.run.console import pct
from test_end_of_run import unexpected_stderr
from qsnn.run.runner import train
from qsnn.run.wandb_offline import find_run_files, read_run


def test_multirun_bits_4_32_cosine_restart(run, tmp_path):
    tiny = [o for o in TINY if not o.startswith("print_config=")]  # the config tree: printed once
    r = run("train.py", "-m", "quant.bits=4,32", "sched=cosine_restart", *tiny)
    assert r.returncode == 0, r.stderr[-3000:]
    assert unexpected_stderr(r.stderr) == []
    sweeps = list((tmp_path / "logs" / "train" / "multiruns").iterdir())
    assert len(sweeps) == 1
    jobs = sorted(p for p in sweeps[0].iterdir() if p.is_dir())
    assert [p.name for p in jobs] == ["0", "1"]
    # a multirun's console: one line per job; the config tree (once) and the epochs are in the jobs' logs
    assert "CONFIG" not in r.stdout and (jobs[0] / "train.log").read_text().count("CONFIG") == 1
    assert "CONFIG" not in (jobs[1] / "train.log").read_text() and not re.search(r"^epoch +\d", r.stdout, re.M)
    assert [line.split(" ")[:3] for line in r.stdout.splitlines() if line.startswith("job ")] == \
        [["job", "0", "quant.bits=4"], ["job", "1", "quant.bits=32"]]
    runs = []
    for job, bits in zip(jobs, (4, 32)):
        summary = json.loads((job / "summary.json").read_text())
        assert summary["status"] == "ok" and summary["bits"] == bits
        assert 0.0 <= summary["metrics"]["test/acc"] <= 1.0
        files = find_run_files(job)
        assert len(files) == 1, files  # exactly one W&B run per job, inside the job's dir
        runs.append(read_run(files[0]))
        # the end-of-multirun table: one row per job with the numbers of its summary.json
        assert re.search(rf"\n +{job.name} +quant\.bits={bits} +ok +{re.escape(pct(summary['metrics']['test/acc']))} ",
                         r.stdout), r.stdout[-2000:]
    assert f"report:     python src/report.py {sweeps[0]}" in r.stdout
    assert f"upload: wandb sync {sweeps[0]}/*/wandb/offline-run-*" in r.stdout
    assert runs[0]["id"] != runs[1]["id"]
    assert runs[0]["group"] == runs[1]["group"] == sweeps[0].name
    assert runs[0]["tags"] == ["digits", "bits4", "cosine_restart", "fast_sigmoid"]
    assert runs[1]["tags"] == ["digits", "bits32", "cosine_restart", "fast_sigmoid"]
    assert "quant.bits=4" in runs[0]["name"] and "sched=cosine_restart" in runs[0]["name"]
    cfg = runs[1]["config"]
    assert cfg["quant"]["bits"] == 32 and cfg["sched"]["_target_"] == "qsnn.run.schedules.cosine_restart"
    assert "${" not in json.dumps(cfg)  # fully resolved


def test_train_in_process_learns_digits(make_cfg):
    cfg = make_cfg("trainer.max_epochs=3", "logger=csv", "callbacks.progress_bar=null", "print_config=false")
    summary = train(cfg)
    m = summary["metrics"]
    assert summary["status"] == "ok" and m["test/acc"] > 0.6  # chance is 0.1
    assert len(summary["epochs"]) == 3 and summary["weight_bits"] > 0
    assert len(summary["lr"]) == 3 * 19  # LR recorded every step (1078 train samples / 64)
    assert 0 < m["train/rate_layer0"] < 1


def test_train_restores_thread_count(make_cfg):
    import torch

    before = torch.get_num_threads()
    train(make_cfg("torch_threads=1", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
                   "trainer.limit_val_batches=1", "trainer.limit_test_batches=1", "logger=none", "callbacks=none"))
    assert torch.get_num_threads() == before

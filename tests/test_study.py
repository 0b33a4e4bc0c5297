"""src/study.py end to end on a tiny protocol (real jobs): killed mid-round and re-launched, it
finishes with the verdict of an uninterrupted run and never re-runs a finished job."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from conftest import PY, ROOT

# the quick study cut to 2 arms x 1 trial and one look at 2 seeds: 2 tuning + 4 confirmation jobs, one job
# at a time (no worker processes to start); sweep-quick's two looks are covered by tests/test_protocol.py
TINY_STUDY = ["protocol.arms.sched=[constant]", "protocol.tune.trials=1", "protocol.confirm.seeds=[2]"]


def study(out: Path, **kw) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_SERVICE", "WANDB__SERVICE"))}
    env.update(WANDB_MODE="offline", WANDB_SILENT="true", PYTHONPATH=str(ROOT / "src"))
    return subprocess.Popen([PY, str(ROOT / "src" / "study.py"), "quick", "--dir", str(out), "--n-jobs", "1",
                             *TINY_STUDY], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True, **kw)


def verdict(out: Path) -> str:
    md = (out / "report.md").read_text()
    return md.split("## Verdict", 1)[1].split("\n## ", 1)[0]


def ok_jobs(out: Path) -> dict[str, float]:
    """Finished jobs -> mtime of their summary.json."""
    res = {}
    for s in out.rglob("summary.json"):
        if json.loads(s.read_text()).get("status") == "ok":
            res[str(s.parent.relative_to(out))] = s.stat().st_mtime
    return res


def test_killed_study_continues_to_the_same_verdict_without_rerunning_jobs(tmp_path):
    ref = study(tmp_path / "ref")
    out = tmp_path / "killed"
    proc = study(out)
    deadline = time.time() + 600
    while not any((out / "confirm").rglob("summary.json")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGTERM)  # the study and its jobs, in the middle of the first confirmation round
    proc.wait(timeout=120)
    assert not (out / "report.md").exists()
    before = ok_jobs(out)
    assert any(k.startswith("tune/") for k in before)
    launches_before = len((out / "launches.jsonl").read_text().splitlines())

    again = study(out)
    log = again.communicate(timeout=600)[0]
    assert again.returncode == 0, log[-3000:]
    after = ok_jobs(out)
    assert {k: after[k] for k in before} == before  # finished jobs untouched
    relaunched = [json.loads(x)["jobs"] for x in (out / "launches.jsonl").read_text().splitlines()[launches_before:]]
    assert not set(before) & {j for jobs in relaunched for j in jobs}, "a finished job was launched again"

    assert ref.wait(timeout=600) == 0, ref.communicate()[0][-3000:]
    assert verdict(out) == verdict(tmp_path / "ref")
    assert (out / "report.md").read_text().splitlines()[2] == "## Verdict"


def test_list_sweeper_composes_one_job_per_group_and_stops_a_bad_job_before_training(tmp_path):
    import yaml

    from conftest import run_script
    from hydra_plugins.qsnn_list_sweeper.list_sweeper import one_per_group

    trials = [["sched=cosine_restart", "optim.lr=0.01", "sched.T_0_frac=0.2", "seed=1000"],
              ["sched=cosine_restart", "optim.lr=0.003", "sched.T_0_frac=0.4", "seed=1001"],
              ["sched=cosine", "optim.lr=0.01", "seed=1000"], ["sched=cosine", "optim.lr=0.02", "seed=1001"]]
    assert one_per_group(trials) == [trials[0], trials[2]]
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(yaml.safe_dump([["sched=constant", "seed=1"], ["sched=nope", "seed=1"]]))
    r = run_script("train.py", "-m", "hydra/sweeper=list", f"hydra.sweeper.jobs_file={jobs}",
                   f"hydra.sweep.dir={tmp_path / 'sweep'}", "data=randman")
    assert r.returncode != 0 and "nope" in r.stderr
    assert not list((tmp_path / "sweep").rglob("summary.json")), "a job trained before the bad one was found"

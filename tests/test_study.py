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
TINY_STUDY = ["protocol.arms.sched=[constant]", "protocol.tune.trials=1", "protocol.confirm.seeds=[2]",
              "trainer.max_epochs=2", "trainer.limit_train_batches=3", "trainer.limit_val_batches=2",
              "trainer.limit_test_batches=2"]


def study(out: Path, extra: list[str] = (), **kw) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_SERVICE", "WANDB__SERVICE"))}
    env.update(WANDB_MODE="offline", WANDB_SILENT="true", PYTHONPATH=str(ROOT / "src"))
    return subprocess.Popen([PY, str(ROOT / "src" / "study.py"), "quick", "--dir", str(out), "--n-jobs", "1",
                             *TINY_STUDY, *extra], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
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
    assert headings_md(out / "report.md") == headings_html(out / "report.html")


def headings_md(path: Path) -> list[str]:
    return [line.lstrip("#").strip().replace("`", "") for line in path.read_text().splitlines() if line.startswith("#")]


def headings_html(path: Path) -> list[str]:
    """report.html is report.md rendered: the same sections in the same order, the verdict first."""
    import html
    import re

    return [html.unescape(re.sub("<[^>]+>", "", h)).strip()
            for h in re.findall(r"<h[1-6][^>]*>(.*?)</h[1-6]>", path.read_text(), flags=re.S)]


def test_make_sweep_quick_learns_and_its_console_is_one_line_per_job_with_progress(tmp_path):
    """`make sweep-quick` as a new user runs it (W&B not silenced): every arm well above chance, a
    verdict about something, and a console of progress lines: none from W&B, none per epoch."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_SERVICE", "WANDB__SERVICE", "WANDB_SILENT"))}
    env["WANDB_MODE"] = "offline"
    out = tmp_path / "quick"
    r = subprocess.run(["make", "--no-print-directory", "sweep-quick", f"SWEEP_DIR={out}"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    lines = (r.stdout + r.stderr).splitlines()
    assert not [x for x in lines if x.startswith("wandb:")]
    study_lines = [x for x in lines if x.startswith("[study]")]
    for phase, n in (("tune", 8), ("confirm_look1", 8), ("confirm_look2", 4)):
        progress = [x for x in study_lines if x.startswith(f"[study] {phase} ") and " done, " in x]
        assert len(progress) == n and progress[-1].startswith(f"[study] {phase} {n}/{n} done")
        assert all(" elapsed, ~" in x and " left | " in x for x in progress)
    # the rest: make's own lines (install when pyproject changed), the verdict, the report's path
    others = [x for x in lines if x not in study_lines and x.strip() and not x.startswith(("make", ".venv", "test -x",
                                                                                          "touch", "# ", "WARNING"))]
    assert others[0] == "## Verdict" and others[-1].startswith("report: ") and len(others) <= 3, others
    assert "Nothing was learned" not in others[1]
    accs = [json.loads(s.read_text())["metrics"]["test/acc"] for s in (out / "confirm").rglob("summary.json")]
    assert len(accs) == 12 and min(accs) > 0.5
    assert headings_md(out / "report.md") == headings_html(out / "report.html")


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


def test_one_study_per_dir_ctrl_c_and_a_changed_study(tmp_path, capsys):
    """A second study on a running study's dir stops at once naming the holder's pid; Ctrl-C ends the
    running one with one line and exit 130, its running job saying interrupted; a later run with
    another definition is refused before it launches anything, naming the changed key."""
    import signal
    import sys

    sys.path.insert(0, str(ROOT / "src"))
    from study import main  # noqa: E402  (src/study.py, the entry point)

    out = tmp_path / "study"
    first = study(out, extra=["trainer.max_epochs=500"])  # jobs that would run for minutes
    deadline = time.time() + 300
    while not list(out.rglob("last.ckpt")) and first.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert first.poll() is None, first.communicate()[0][-3000:]

    argv = ["quick", "--dir", str(out), "--n-jobs", "1", *TINY_STUDY, "trainer.max_epochs=500"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: RunDirBusy: study dir {out} is in use") \
        and f"(pid {first.pid}," in err[0], err

    running = [p.parent.parent for p in out.rglob("last.ckpt")]
    os.killpg(first.pid, signal.SIGINT)
    log = first.communicate(timeout=240)[0]
    assert first.returncode == 130, log[-3000:]
    assert [ln for ln in log.splitlines() if ln.startswith("interrupted")] == \
        [f"interrupted: continue with the same command (study dir {out})"], log[-3000:]
    assert "Traceback" not in log
    for job in running:
        assert json.loads((job / "summary.json").read_text())["status"] == "interrupted"

    launches = (out / "launches.jsonl").read_text()
    assert main([*argv[:-1], "trainer.max_epochs=400", "protocol.confirm.margin=0.02"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: ResumeRefused: study dir {out} holds another study"), err
    assert "protocol.margin: 0.01 -> 0.02" in err[0] and "config.trainer.max_epochs: 500 -> 400" in err[0]
    assert (out / "launches.jsonl").read_text() == launches  # nothing launched

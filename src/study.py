"""Run a study of sweeps/ end to end (``make sweep``): its protocol when it has a ``protocol:`` block
(tune -> confirmation rounds -> report with a ``## Verdict``), else its plain grid (+ report).

    python src/study.py standard --dir logs/sweeps/standard/<timestamp> [--n-jobs 2] [overrides...]

Re-running with the same --dir continues the study: finished jobs are never launched again (job
dirs are named by phase/arm/trial or seed), and an interrupted job resumes from its last checkpoint
(``resume=true``). Each phase or round is one Hydra multirun through the study's launcher
(``hydra/sweeper=list`` with the round's jobs), so joblib or the stacked launcher apply.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from qsnn.errors import ConfigError
from qsnn.run import interrupt
from qsnn.run.console import show_path
from qsnn.run.summary import read_summary
from qsnn.study.definition import check_definition, claim
from qsnn.study.progress import RoundProgress
from qsnn.study.protocol import SUBDIR

ROOT = Path(__file__).resolve().parent.parent
SWEEPS, CONF = ROOT / "sweeps", ROOT / "conf"


def compose_study(name: str, overrides: list[str]):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(SWEEPS), version_base="1.3"):
        return compose(config_name=name, overrides=[f"hydra.searchpath=[file://{CONF}]", *overrides])


def multirun(study: str, out: Path, jobs: list[dict], n_jobs: int | None, extra: list[str], tag: str,
             metric: str) -> None:
    """One Hydra multirun over ``jobs`` (each {'dir', 'overrides'}) into ``out``. Its output goes to
    ``<out>/logs/<tag>.log``; the console gets one progress line per finished job (``metric`` shown)."""
    if not jobs:
        return
    jobs_file = out / f"jobs_{tag}.yaml"
    jobs_file.write_text(yaml.safe_dump([j["overrides"] for j in jobs]))
    with open(out / "launches.jsonl", "a") as f:  # what ran when: a re-launched study appends
        f.write(json.dumps({"time": time.time(), "tag": tag, "jobs": [j["dir"] for j in jobs]}) + "\n")
    cmd = [sys.executable, str(ROOT / "src" / "train.py"), "-m", "--config-dir", str(SWEEPS), "--config-name", study,
           "hydra/sweeper=list", f"hydra.sweeper.jobs_file={jobs_file}", f"hydra.sweep.dir={out}", SUBDIR, "resume=true",
           *([f"hydra.launcher.n_jobs={n_jobs}"] if n_jobs else []), *extra]
    log_path = out / "logs" / f"{tag}.log"
    log_path.parent.mkdir(exist_ok=True)
    print(f"[study] {tag}: {len(jobs)} jobs (their output: {show_path(log_path)})", flush=True)
    progress = RoundProgress(tag, jobs, out, metric)
    with open(log_path, "a") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        try:
            while proc.poll() is None:
                progress.poll()
                time.sleep(0.5)
        finally:
            proc.wait()
            progress.close()
    if proc.returncode:
        if proc.returncode != 130:  # an interrupt says so itself; a failure shows where it failed
            tail = log_path.read_text(errors="replace").splitlines()[-15:]
            print("\n".join(["[study] the multirun failed; the end of its log:", *tail]), file=sys.stderr)
        raise subprocess.CalledProcessError(proc.returncode, cmd)


def summaries(out: Path, jobs: list[dict]) -> dict[str, dict]:
    return {j["dir"]: s for j in jobs if (s := read_summary(out / j["dir"])) is not None}


def finished(s: dict | None) -> bool:
    return bool(s) and s.get("status") in ("ok", "failed")  # interrupted / running: launch again (resume)


def run_protocol(study: str, cfg, out: Path, n_jobs: int | None, extra: list[str]) -> dict:
    from qsnn.study.protocol import Protocol, analyze, arm_id, confirm_job, select_best, tune_jobs

    p = Protocol.from_cfg(cfg.protocol)
    tjobs = tune_jobs(p)
    done = summaries(out, tjobs)
    multirun(study, out, [j for j in tjobs if not finished(done.get(j["dir"]))], n_jobs, extra, "tune", p.select)
    best = select_best(p, summaries(out, tjobs))
    arms = {arm_id(a): a for a in p.arm_list() if arm_id(a) in best}
    if len(arms) < len(p.arm_list()):
        print(f"[study] no finished tuning trial for: {sorted(set(map(arm_id, p.arm_list())) - set(arms))}")
    for look in range(1, 2 * len(p.seeds) + 2):
        cjobs = [confirm_job(p, arms[a], best[a]["params"], s) for a in arms for s in range(1, p.n_max + 1)]
        res = summaries(out, cjobs)
        done: dict[str, dict[int, float]] = {a: {} for a in arms}
        for j in cjobs:
            s = res.get(j["dir"])
            if finished(s):
                v = (s.get("metrics") or {}).get(p.metric) if s.get("status") == "ok" else None
                done[j["arm"]][j["seed"]] = float(v) if v is not None else math.nan
        state = analyze(p, done) if len(arms) == len(p.arm_list()) else {"finished": True, "looks": []}
        if state["finished"]:
            return {"protocol": p, "best": best, "state": state, "arms": arms}
        todo = [j for j in cjobs if j["seed"] in state["pending"].get(j["arm"], [])]
        multirun(study, out, todo, n_jobs, extra, f"confirm_look{len(state['looks']) + 1}", p.metric)
    raise RuntimeError("confirmation rounds did not finish: jobs keep failing to write summary.json")


def main(argv=None) -> int:
    a = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a.add_argument("study", help="a study of sweeps/ (file name without .yaml)")
    a.add_argument("--dir", required=True, help="study dir (re-use one to continue the study)")
    a.add_argument("--n-jobs", type=int, default=None, help="hydra.launcher.n_jobs")
    a.add_argument("overrides", nargs="*", help="more overrides for every job")
    args = a.parse_intermixed_args(argv)
    out = Path(args.dir).resolve()
    try:  # before anything launches: the dir is writable, no other study runs in it, the same study
        _held = claim(out)  # the lock lives as long as this run
        cfg = compose_study(args.study, [o for o in args.overrides if not o.startswith("hydra")])
        check_definition(out, cfg)
    except ConfigError as e:
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    interrupt.note_dir("study dir", out)
    os.environ[interrupt.PARENT_REPORTS] = str(os.getpid())  # Ctrl-C: said once, here, not by the multirun
    t0 = time.time()
    if cfg.get("protocol") is None:  # a plain grid: one multirun + the report
        cmd = [sys.executable, str(ROOT / "src" / "train.py"), "-m", "--config-dir", str(SWEEPS), "--config-name",
               args.study, f"hydra.sweep.dir={out}", *([f"hydra.launcher.n_jobs={args.n_jobs}"] if args.n_jobs else []),
               *args.overrides]
        subprocess.run(cmd, check=True)
        from qsnn.study.report import make_report

        print(make_report([out])["md"].read_text())
        return 0
    result = run_protocol(args.study, cfg, out, args.n_jobs, args.overrides)
    from qsnn.study.verdict import write_study_report

    md = write_study_report(result, out, wall_s=time.time() - t0)
    print(verdict_text(md.read_text()))
    print(f"report: {show_path(md)} ({show_path(md.with_suffix('.html'))}, self-contained)")
    return 0


def verdict_text(md: str) -> str:
    """The report's ``## Verdict`` section (the console shows it; the tables are in the report)."""
    return "## Verdict" + md.split("## Verdict", 1)[1].split("\n## ", 1)[0].rstrip() if "## Verdict" in md else md


if __name__ == "__main__":
    interrupt.install(main=True)  # Ctrl-C: the running multirun ends its jobs (summary.json interrupted)
    try:
        sys.exit(main())
    except (KeyboardInterrupt, subprocess.CalledProcessError):
        if not interrupt.requested():
            raise
        interrupt.stop(how="the same command")

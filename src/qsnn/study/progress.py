"""A study round's progress on the console: one line per finished job with jobs done / total, the
elapsed time and an estimate of the time left from the jobs finished so far. On a terminal the
lines scroll above a rich progress bar; elsewhere (CI, a file) they are plain lines.

The round's multirun runs as a subprocess writing its own output to a log file; progress comes from
the jobs' ``summary.json`` files, polled while it runs.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TextIO

from qsnn.run.summary import read_summary

DONE = ("ok", "failed")


def clock(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def job_result(out: Path, job: dict, since: float) -> dict | None:
    """The job's summary if it finished (ok or failed) after ``since``; else None."""
    s = read_summary(out / job["dir"], since)
    return s if s is not None and s.get("status") in DONE else None


def result_text(s: dict, metric: str) -> str:
    if s["status"] != "ok":
        return f"failed: {s.get('error', '')}"
    v = (s.get("metrics") or {}).get(metric)
    return f"ok, {metric} {100 * v:.1f} %" if isinstance(v, (int, float)) else "ok"


class RoundProgress:
    """Progress of one round (``tag``: tune, confirm_look1, ...) over ``jobs`` (each {"dir": ...})."""

    def __init__(self, tag: str, jobs: list[dict], out: Path, metric: str, stream: TextIO | None = None):
        self.tag, self.jobs, self.out, self.metric = tag, jobs, out, metric
        self.stream = stream or sys.stdout
        self.t0 = time.time()
        self.since = self.t0 - 1.0  # file mtimes may be rounded down to the second
        self.done: set[str] = set()
        self.bar = None
        if self.stream.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
                TimeRemainingColumn

            self.bar = Progress(TextColumn(f"[study] {tag}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                TimeRemainingColumn(), console=Console(file=self.stream), transient=True)
            self.task = self.bar.add_task(tag, total=len(jobs))
            self.bar.start()

    def line(self, job: dict, s: dict) -> str:
        n, total, elapsed = len(self.done), len(self.jobs), time.time() - self.t0
        left = elapsed / n * (total - n)
        return (f"[study] {self.tag} {n}/{total} done, {clock(elapsed)} elapsed, ~{clock(left)} left | "
                f"{job['dir']}: {result_text(s, self.metric)}")

    def poll(self) -> None:
        """Print a line for each job that finished since the last poll."""
        for job in self.jobs:
            if job["dir"] in self.done:
                continue
            s = job_result(self.out, job, self.since)
            if s is None:
                continue
            self.done.add(job["dir"])
            if self.bar is not None:
                self.bar.console.print(self.line(job, s), highlight=False, soft_wrap=True)
                self.bar.update(self.task, completed=len(self.done))
            else:
                print(self.line(job, s), file=self.stream, flush=True)

    def close(self) -> None:
        self.poll()
        if self.bar is not None:
            self.bar.stop()

"""What a job of a multirun shows on the console: one line when it ends (``job_line``). Everything else
it would print (the config tree, per-epoch lines, Lightning's messages, warnings, W&B's lines) goes to
its own log file in its output dir, next to Hydra's job log: parallel jobs no longer interleave their
lines on one console, and a study's console stays readable.

``into_logs(files)`` routes this process's ``sys.stdout``/``sys.stderr`` and its console log handlers
into ``files`` for a while and yields the real console. Used by ``src/train.py`` for each job of a
multirun (Hydra's file handler already writes the job's log records to its ``train.log``) and by the
stacked launcher for a stacked group (every member's log gets the group's lines).
"""
from __future__ import annotations

import io
import logging
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, TextIO

FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"
_active = [0]


def active() -> bool:
    """True inside ``into_logs``: the job runs without a console (no progress bar either)."""
    return _active[0] > 0


class _Tee(io.TextIOBase):
    """A text stream writing to several files, flushed at each write (lines of the job's own log
    records and of its prints land in order)."""

    def __init__(self, files: list[TextIO]):
        self.files = files

    def write(self, s: str) -> int:
        for f in self.files:
            f.write(s)
            f.flush()
        return len(s)

    def isatty(self) -> bool:
        return False


def _console_handlers(logger: logging.Logger) -> list[logging.Handler]:
    return [h for h in logger.handlers if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]


@contextmanager
def into_logs(files: list[Path], keep_file_handlers: bool = True) -> Iterator[TextIO]:
    """Send prints, warnings and console log records to ``files`` (appended) until the block ends.

    ``keep_file_handlers``: the process's log files (Hydra's job log) stay as they are and receive
    the root logger's records; otherwise they are set aside too and ``files`` get every record."""
    real = sys.stdout
    streams = [open(f, "a", encoding="utf-8") for f in files]
    tee = _Tee(streams)
    root = logging.getLogger()
    loggers = [root] + [lg for lg in root.manager.loggerDict.values() if isinstance(lg, logging.Logger)]
    removed: list[tuple[logging.Logger, logging.Handler]] = []
    added: list[tuple[logging.Logger, logging.Handler]] = []
    for lg in loggers:
        drop = _console_handlers(lg)
        if lg is root and not keep_file_handlers:
            drop += [h for h in lg.handlers if isinstance(h, logging.FileHandler)]
        for h in drop:
            lg.removeHandler(h)
            removed.append((lg, h))
        has_file = any(isinstance(h, logging.FileHandler) for h in lg.handlers)
        if drop and not (lg is root and has_file):  # a logger of its own (Lightning's): its records go to the log
            h = logging.StreamHandler(tee)
            h.setFormatter(drop[0].formatter or logging.Formatter(FORMAT))
            h.setLevel(min(x.level for x in drop))
            lg.addHandler(h)
            added.append((lg, h))
    saved = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = tee
    _active[0] += 1
    try:
        yield real
    finally:
        _active[0] -= 1
        sys.stdout, sys.stderr = saved
        for lg, h in added:
            lg.removeHandler(h)
        for lg, h in removed:
            lg.addHandler(h)
        for f in streams:
            f.close()


def job_line(summary: dict[str, Any], num: int | None = None) -> str:
    """The one console line of a finished job: its number, overrides, status and test accuracy (or
    its error), and where to look when it carries warnings."""
    from qsnn.run.console import pct, show_path

    status = summary.get("status", "?")
    head = f"job {num if num is not None else summary.get('job_num', '?')} {' '.join(summary.get('overrides') or [])}"
    if status != "ok":
        return f"{head}: {status}: {summary.get('error', '')}"
    line = f"{head}: ok, test/acc {pct((summary.get('metrics') or {}).get('test/acc'))}"
    warnings = summary.get("warnings") or []
    if warnings:
        log = Path(summary.get("output_dir", ".")) / "train.log"
        line += f" ({len(warnings)} warning{'s' * (len(warnings) > 1)}: {warnings[0][:60]}...; {show_path(log)})"
    return line

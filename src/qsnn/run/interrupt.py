"""Ctrl-C anywhere: one line, exit code 130, and every job that was running says ``interrupted``.

The terminal sends SIGINT to its whole process group: the command the user started, a multirun's
worker processes (joblib's and the stacked launcher's), a study's multiruns. Every one of them
runs ``on_sigint`` (``install``), which does what fits the process:

- it trains a job (``busy``): KeyboardInterrupt, as Python's default; Lightning stops after the
  batch and the runner (or the stacked group) writes summary.json ``interrupted``, checkpoints intact;
- it waits for child processes that got the same signal (a multirun's parent while its workers
  train, a study while its multirun runs): it only notes the interrupt and keeps waiting, so the
  children end their jobs and write their summaries (joblib kills its workers at once when the
  parent raises, mid-write);
- a worker process between jobs: it only notes the interrupt (a KeyboardInterrupt there would
  kill the worker, and joblib would then kill the others);
- anything else (composing a config, a second Ctrl-C): KeyboardInterrupt at once.

A worker returns from its interrupted job and skips the jobs still queued for it (``requested``);
the process the user started prints ``interrupted: continue with resume=true (<dir>)`` and exits
130 (``stop``), without a traceback.
"""
from __future__ import annotations

import os
import signal
import sys
from contextlib import contextmanager
from typing import Iterator, NoReturn

EXIT_CODE = 130
# the pid of a command that reports the interrupt itself (src/study.py): its multiruns stay quiet
PARENT_REPORTS = "QSNN_PARENT_REPORTS_INTERRUPT"
_state = {"requested": False, "busy": 0, "main": False, "where": None}


def install(main: bool = False) -> None:
    """Handle SIGINT in this process; ``main``: this is the command the user started (it reports)."""
    _state["main"] = _state["main"] or main
    try:
        signal.signal(signal.SIGINT, on_sigint)
    except ValueError:  # not the main thread: keep Python's default
        pass


def on_sigint(signum, frame) -> None:
    again = _state["requested"]
    _state["requested"] = True
    if _state["busy"] or _state["main"] and (again or not _children_running()):
        raise KeyboardInterrupt


def _children_running() -> bool:
    """True while this process has child processes and none of them has ended (not reaped here)."""
    try:
        return os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None
    except (AttributeError, OSError):  # no children (ChildProcessError), or no waitid on this OS
        return False


def requested() -> bool:
    return _state["requested"]


@contextmanager
def busy() -> Iterator[None]:
    """A job trains in this process: Ctrl-C interrupts it."""
    _state["busy"] += 1
    try:
        yield
    finally:
        _state["busy"] -= 1


def note_dir(kind: str, where) -> None:
    """The run or sweep dir the final line names (``kind``: "output dir", "sweep dir")."""
    _state["where"] = f"{kind} {where}"


def caused(e: BaseException) -> bool:
    """``e`` (KeyboardInterrupt, or the SystemExit Lightning turns it into) comes from a Ctrl-C."""
    return _state["requested"] and isinstance(e, (KeyboardInterrupt, SystemExit))


def reason(e: BaseException) -> str:
    return "Ctrl-C" if caused(e) else type(e).__name__


def job_interrupted() -> None:
    """After a job wrote its ``interrupted`` summary: the command the user started stops here (one
    line, exit 130); a worker process returns, so its parent collects the job's result."""
    if _state["main"]:
        stop()


def stop(how: str = "resume=true") -> NoReturn:
    """The one line and exit code 130; the line is left to a parent command that says it
    (``PARENT_REPORTS`` holds that command's pid)."""
    if os.environ.get(PARENT_REPORTS, str(os.getpid())) == str(os.getpid()):
        where = f" ({_state['where']})" if _state["where"] else ""
        # the process's own stderr: a multirun job's output may be routed into its log (qsnn.run.job_console)
        print(f"interrupted: continue with {how}{where}", file=sys.__stderr__ or sys.stderr, flush=True)
    sys.exit(EXIT_CODE)

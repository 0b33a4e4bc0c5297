"""One owner for a job's output dir: a lock while the job runs, and the files it writes there.

A job takes the lock before it looks at the dir and holds it until it returns; a second job on
the same dir (same ``hydra.run.dir``) is refused with one line. The lock is the kernel's
``flock`` on the directory itself: no lock file to clean up, released when the process ends,
crash or SIGKILL included, so there is never a stale lock. Where the file system has no flock
(some network mounts) the job warns and runs unlocked.

Hydra's own ``.hydra/*.yaml`` are written here too (``conf/hydra/default.yaml`` sets
``hydra.output_subdir: null``, so Hydra does not write them before the job starts): only once
the job owns the dir, so a refused re-run leaves the previous run's files as they were.
"""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from qsnn.errors import ConfigError, RunDirBusy
from qsnn.run import interrupt

log = logging.getLogger("qsnn")
RUN_MARKERS = ("summary.json", "checkpoints/last.ckpt")  # a dir holding either holds a run


def holds_run(out_dir: Path) -> bool:
    return any((Path(out_dir) / m).is_file() for m in RUN_MARKERS)


@contextmanager
def locked(out_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``out_dir`` (created if missing) for the job's lifetime."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(out_dir, os.O_RDONLY)
    try:
        if not _flock(fd, f"output dir {out_dir}"):
            raise RunDirBusy(f"output dir {out_dir} is in use by another running job: wait for it to end, "
                             f"or choose another hydra.run.dir / hydra.sweep.dir")
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


@contextmanager
def pid_locked(path: Path, what: str, key: str) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` (created if missing) with this process's pid in it,
    for a process whose children lock dirs below (a study: ``<dir>/.study.lock``). Busy: RunDirBusy
    naming the holder's pid; ``what`` names the dir ("study dir"), ``key`` the option choosing it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if not _flock(fd, f"{what} {path.parent}"):
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise RunDirBusy(f"{what} {path.parent} is in use by another process (pid {holder}, lock file "
                             f"{path.name}): wait for it to end, or choose another {key}")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def _flock(fd: int, what: str) -> bool:
    """Take the kernel's exclusive lock on ``fd``; False when another process holds it. Where the file
    system has no flock (some network mounts): warn and go on unlocked (True)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as e:
        if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EBADF, errno.EINVAL):
            raise
        log.warning("%s: no lock (%s); do not start a second job on it", what, e.strerror)
    return True


def check_writable(path: str | Path, key: str) -> None:
    """ConfigError naming ``key``, the dir and the OS reason when a job could not write there."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write_test.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
        return
    except FileExistsError:
        why = "a file is there, not a directory"
    except OSError as e:
        why = e.strerror or type(e).__name__
    raise ConfigError(f"{key}={path}: cannot write there ({why}): choose another {key}, or make it writable")


class OutputDirCheck(Callback):
    """Hydra callback (conf/hydra/default.yaml), run before Hydra opens the job's log file in the dir:
    an output dir that cannot be written is one line (``error: ConfigError: ...``), exit 1; it also
    tells ``qsnn.run.interrupt`` which dir a Ctrl-C's line names."""

    def on_run_start(self, config, **kwargs) -> None:
        self._check(config.hydra.run.dir, "hydra.run.dir", "output dir")

    def on_multirun_start(self, config, **kwargs) -> None:
        self._check(config.hydra.sweep.dir, "hydra.sweep.dir", "sweep dir")

    @staticmethod
    def _check(path, key: str, kind: str) -> None:
        interrupt.note_dir(kind, path)
        try:
            check_writable(path, key)
        except ConfigError as e:
            print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
            sys.exit(1)


def atomic_write_text(path: str | Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_run_config(cfg: DictConfig, out_dir: Path) -> dict:
    """``config_resolved.yaml`` and Hydra's ``.hydra/{config,hydra,overrides}.yaml``; returns the
    resolved config as a dict."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    atomic_write_text(Path(out_dir) / "config_resolved.yaml", OmegaConf.to_yaml(OmegaConf.create(resolved)))
    hydra_cfg = _hydra_cfg()
    if hydra_cfg is not None:  # the same three files Hydra writes with output_subdir=.hydra
        sub = Path(out_dir) / ".hydra"
        atomic_write_text(sub / "config.yaml", OmegaConf.to_yaml(cfg))
        atomic_write_text(sub / "hydra.yaml", OmegaConf.to_yaml(OmegaConf.create({"hydra": hydra_cfg})))
        atomic_write_text(sub / "overrides.yaml", OmegaConf.to_yaml(hydra_cfg.overrides.task))
    return resolved


def _hydra_cfg():
    try:
        from hydra.core.hydra_config import HydraConfig

        return HydraConfig.get()
    except (ImportError, ValueError):
        return None

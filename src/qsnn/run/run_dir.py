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
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from omegaconf import DictConfig, OmegaConf

from qsnn.errors import ConfigError, RunDirBusy

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
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunDirBusy(f"output dir {out_dir} is in use by another running job: wait for it to end, "
                             f"or choose another hydra.run.dir / hydra.sweep.dir") from None
        except OSError as e:  # no flock on this file system: run, but say so
            if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EBADF, errno.EINVAL):
                raise
            log.warning("output dir %s: no lock (%s); do not start a second job on it", out_dir, e.strerror)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


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

"""One study per study dir: a lock while it runs, and its definition kept beside its jobs.

- ``study_lock(dir)``: ``src/study.py`` holds ``<dir>/.study.lock`` (the kernel's flock on that file,
  its pid inside) for as long as it runs; a second study on the dir stops at once, naming the
  holder's pid. A lock file rather than the dir itself: the study's jobs lock their own dirs below.
- ``check_definition(dir, cfg)``: the first run writes ``study_definition.yaml`` (the resolved
  protocol and the study config); a later run with another definition is refused before it
  launches anything, with one line naming the changed keys (as a refused resume names them), so a
  report never mixes the jobs of two studies. Where files live and what is printed or logged may
  change (``SAFE``).
"""
from __future__ import annotations

import dataclasses
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf

from qsnn.errors import ResumeRefused
from qsnn.run.resume import flat
from qsnn.run.run_dir import atomic_write_text, check_writable, pid_locked

DEFINITION, LOCK = "study_definition.yaml", ".study.lock"
SAFE = ("config.paths", "config.data.root", "config.data.num_workers", "config.logger", "config.print_config",
        "config.torch_threads", "config.trainer.enable_progress_bar", "config.callbacks.progress_bar")


def study_lock(out: Path) -> AbstractContextManager:
    return pid_locked(Path(out) / LOCK, "study dir", "--dir")


def claim(out: Path) -> ExitStack:
    """The study dir for this process: writable, and locked (``study_lock``) until the returned stack
    is closed or the process ends."""
    check_writable(out, "--dir")
    held = ExitStack()
    held.enter_context(study_lock(out))
    return held


def definition(cfg) -> dict[str, Any]:
    """The resolved protocol (every default filled in; None for a plain grid) and the study config
    as composed (interpolations kept: they follow the keys they name)."""
    from qsnn.study.protocol import Protocol

    protocol = cfg.get("protocol")
    config = OmegaConf.to_container(cfg, resolve=False)
    config.pop("protocol", None)
    return {"protocol": dataclasses.asdict(Protocol.from_cfg(protocol)) if protocol is not None else None,
            "config": config}


def check_definition(out: Path, cfg) -> None:
    """Write the study's definition on its first run; refuse a run whose definition differs."""
    path = Path(out) / DEFINITION
    new = definition(cfg)
    if not path.is_file():
        atomic_write_text(path, yaml.safe_dump(new, sort_keys=False))
        return
    try:
        saved = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ResumeRefused(f"{path}: cannot read the study's definition ({type(e).__name__}); "
                            "choose another --dir") from None
    old, now = flat(saved), flat(new)
    keys = [k for k in sorted(set(old) | set(now)) if old.get(k, "(absent)") != now.get(k, "(absent)")
            and not any(k == s or k.startswith(s + ".") for s in SAFE)]
    if keys:
        changes = [f"{k}: {old.get(k, '(absent)')} -> {now.get(k, '(absent)')}" for k in keys]
        shown = ", ".join(changes[:8]) + (f" and {len(changes) - 8} more" if len(changes) > 8 else "")
        raise ResumeRefused(f"study dir {out} holds another study ({DEFINITION}): {shown}; run the study it "
                            "holds with its own settings, or choose another --dir")

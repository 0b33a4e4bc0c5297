"""Checkpoints: written atomically, read safely, and a ModelCheckpoint fit for resuming.

Writing: checkpoints go to a temp file in the same folder, flushed to disk, then renamed.

Lightning's TorchCheckpointIO goes through an fsspec transaction whose temp file lives in the
system temp dir; when that is another filesystem the final step is a copy, and a kill during
the copy leaves a half-written ``last.ckpt`` that resume would trust. A rename inside one
folder is atomic: readers see the old checkpoint or the new one, never a mix. A failed write
(disk full) removes its temp file and raises, naming the checkpoint; the previous file stays (the
message says whether there was one). ``resume_point`` is what ``resume=true`` continues from:
``last.ckpt``, or when a failed write left none, the newest other checkpoint that reads.

Reading: every checkpoint a user names (``ckpt_path``, ``resume=true``, ``src/eval.py``) is read
with ``torch.load(weights_only=True)``: a file that would unpickle anything but tensors and
plain values (i.e. run code) is refused unless ``trust_checkpoint=true``.
"""
from __future__ import annotations

import logging
import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from qsnn.errors import CheckpointError, CheckpointWriteError

log = logging.getLogger("qsnn")


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        had = path.is_file()
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except (OSError, RuntimeError) as e:  # torch's zip writer turns a failed write into a RuntimeError
            tmp.unlink(missing_ok=True)
            cause = e if isinstance(e, OSError) else e.__context__ if isinstance(e.__context__, OSError) else e
            why = getattr(cause, "strerror", None) or str(cause).splitlines()[0]
            raise CheckpointWriteError(f"checkpoint {path}: write failed ({why}); " + (
                "the previous checkpoint there is unchanged" if had else "no file was written there")) from e


# What our checkpoints hold beyond tensors, numbers, strings, lists, tuples and dicts (which
# torch.load(weights_only=True) accepts anyway): nothing today (tests/test_checkpoint_io.py checks
# that a trained run's checkpoint asks for no other global); add a class here if a callback's state
# needs one. Anything else a file asks to unpickle is code it would run: refused unless the user
# says the file is trusted (trust_checkpoint=true).
SAFE_GLOBALS: list = []


def load_checkpoint(path: str | Path, trust: bool = False) -> dict[str, Any]:
    """A user-named checkpoint, read with ``torch.load(weights_only=True)`` (plus SAFE_GLOBALS):
    one that needs arbitrary unpickling is refused without running any of it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"ckpt_path={str(path)!r}: no such checkpoint file")
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            ckpt = torch.load(path, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as e:  # the weights-only unpickler stopped: unsafe, or not a checkpoint
        unsafe = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e))
        if not unsafe:
            raise _unreadable(path, e) from None
        raise CheckpointError(f"ckpt_path={str(path)!r}: refused: loading it would run code stored in the file "
                              f"(it asks for {unsafe.group(1)}); if you trust the file, add trust_checkpoint=true") \
            from None
    except Exception as e:  # truncated, not a torch file
        raise _unreadable(path, e) from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise CheckpointError(f"ckpt_path={str(path)!r}: not a Lightning checkpoint (no state_dict)")
    return ckpt


def resume_point(out_dir: str | Path, trust: bool = False) -> tuple[Path | None, dict[str, Any] | None]:
    """The checkpoint ``resume=true`` continues from, and its content: ``checkpoints/last.ckpt`` (one
    that cannot be read is refused: CheckpointError), or when it is missing (a failed write, e.g. a
    full disk) the newest other checkpoint there that reads; (None, None) when there is none."""
    ckpts = Path(out_dir) / "checkpoints"
    last = ckpts / "last.ckpt"
    if last.is_file():
        log.info("resuming from %s", last)
        return last, load_checkpoint(last, trust=trust)
    for path in resume_candidates(out_dir):
        try:
            ckpt = load_checkpoint(path, trust=trust)
        except CheckpointError as e:
            log.warning("not resuming from %s: %s", path, e)
            continue
        log.info("no last.ckpt in %s: resuming from %s, the newest intact checkpoint there", ckpts, path.name)
        return path, ckpt
    log.info("nothing to resume in %s: starting from scratch", out_dir)
    return None, None


def resume_candidates(out_dir: str | Path) -> list[Path]:
    """``checkpoints/last.ckpt`` if it is there, else the run's other checkpoints, newest first."""
    ckpts = Path(out_dir) / "checkpoints"
    if (ckpts / "last.ckpt").is_file():
        return [ckpts / "last.ckpt"]
    return sorted(ckpts.glob("*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True)


def _unreadable(path: Path, e: Exception) -> CheckpointError:
    why = re.search(r"WeightsUnpickler error: *\n*(.+)", str(e))  # torch's own reason, after its long preamble
    why = f"{type(e).__name__}: {why.group(1) if why else (str(e).splitlines() or [''])[0]}"
    return CheckpointError(f"ckpt_path={str(path)!r}: cannot read checkpoint ({why.strip()})")


def check_state_matches(ckpt: dict[str, Any], path: str | Path, module: torch.nn.Module) -> None:
    """One line when the checkpoint's weights are not those of ``module``'s architecture."""
    state, ours, where = ckpt["state_dict"], module.state_dict(), f"ckpt_path={str(path)!r}"
    for key, value in ours.items():
        if key not in state:
            raise CheckpointError(f"{where} was saved from a different model config: it has no {key}")
        if tuple(state[key].shape) != tuple(value.shape):
            raise CheckpointError(f"{where} was saved from a different model config: "
                                  f"{key} is {list(state[key].shape)} there, {list(value.shape)} here")
    extra = sorted(set(state) - set(ours))
    if extra:
        raise CheckpointError(f"{where} was saved from a different model config: it has {extra[0]}, "
                              f"which this model lacks")


class RunCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint with two changes for resuming:

    - ``last.ckpt`` after every epoch: Lightning writes it only when a top-k checkpoint was
      saved in that epoch, so a resume after an epoch that did not improve repeated it;
    - paths saved inside the checkpoint (best and top-k files) follow the run dir when it was
      moved or copied: Lightning keeps the old absolute ``best_model_path``, and a resumed copy
      would test the original's best checkpoint (or fail when it is gone).
    """

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if (self.save_last and self._should_save_on_train_epoch_end(trainer)
                and not self._should_skip_saving_checkpoint(trainer)):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_validation_end(self, trainer, pl_module) -> None:
        super().on_validation_end(trainer, pl_module)
        if (self.save_last and not self._should_save_on_train_epoch_end(trainer)
                and not self._should_skip_saving_checkpoint(trainer)):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        old, new = state_dict.get("dirpath"), self.dirpath
        if old and new and old != new:
            def move(p):
                return os.path.join(new, os.path.relpath(p, old)) if isinstance(p, str) and p.startswith(old) else p
            state_dict = {**state_dict, "dirpath": new,
                          "best_k_models": {move(k): v for k, v in (state_dict.get("best_k_models") or {}).items()},
                          **{k: move(state_dict.get(k)) for k in ("best_model_path", "kth_best_model_path",
                                                                 "last_model_path")}}
        super().load_state_dict(state_dict)

"""Checkpoints written to a temp file in the same folder, flushed to disk, then renamed.

Lightning's TorchCheckpointIO goes through an fsspec transaction whose temp file lives in the
system temp dir; when that is another filesystem the final step is a copy, and a kill during
the copy leaves a half-written ``last.ckpt`` that resume would trust. A rename inside one
folder is atomic: readers see the old checkpoint or the new one, never a mix. A failed write
(disk full) removes its temp file and raises, naming the checkpoint; the previous file stays.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (the previous one at that path is untouched)."""


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
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
            raise CheckpointWriteError(f"checkpoint {path}: write failed ({why}); "
                                       f"the previous checkpoint there is unchanged") from e

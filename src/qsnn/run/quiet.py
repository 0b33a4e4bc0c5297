"""Silence the library lines that say nothing about this run, each at its source.

Every entry names the exact logger or warning message it drops; nothing else is filtered, so a
genuine warning (ours or a library's) still reaches stderr. ``tests/test_quiet.py`` runs the
default training and fails on any stderr line outside its short allowlist.

Dropped here:
- Lightning's INFO lines "GPU available ...", "TPU available ...", its litlogger/litmodels "Tips", and
  "Loading `train_dataloader` to estimate number of stepping batches." and, on Ctrl-C, "Detected
  KeyboardInterrupt, attempting graceful shutdown ..." once per job (logger
  ``lightning.pytorch.utilities.rank_zero``; the device is in the config tree, the rest is advice;
  ``qsnn.run.interrupt`` prints the interrupt's one line).
- torch's FutureWarning "`isinstance(treespec, LeafSpec)` is deprecated", raised by Lightning's
  own ``utilities/_pytree.py`` (their code, not ours; fixed upstream once Lightning stops using it).
- src/eval.py only (``testing_a_checkpoint``): Lightning's warning that the callbacks which wrote the
  checkpoint (ModelCheckpoint, EarlyStopping, ...) are not given: testing needs only the weights.
W&B's "The anonymous setting has no effect" is avoided where it starts: ``qsnn.run.wandb_logger``
does not pass ``anonymous`` to ``wandb.init``.
"""
from __future__ import annotations

import logging
import warnings

LIGHTNING_INFO_DROPPED = (
    "GPU available:",
    "TPU available:",
    "💡 Tip: For seamless cloud",  # "... logging" (litlogger), "... uploads" (litmodels)
    "Loading `train_dataloader` to estimate number of stepping batches",
    "\nDetected KeyboardInterrupt, attempting graceful shutdown",  # Ctrl-C: qsnn.run.interrupt says it once
)
PYTREE_DEPRECATION = r"`isinstance\(treespec, LeafSpec\)` is deprecated"
CKPT_CALLBACKS = r"Be aware that when using `ckpt_path`, callbacks used to create the checkpoint need to be provided"


class _DropMessages(logging.Filter):
    def __init__(self, prefixes: tuple[str, ...]):
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


def silence_library_noise(testing_a_checkpoint: bool = False) -> None:
    """Install the filters above (idempotent; call once per process, before training)."""
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _DropMessages) for f in rank_zero.filters):
        rank_zero.addFilter(_DropMessages(LIGHTNING_INFO_DROPPED))
    warnings.filterwarnings("ignore", message=PYTREE_DEPRECATION, category=FutureWarning)
    if testing_a_checkpoint:
        warnings.filterwarnings("ignore", message=CKPT_CALLBACKS)

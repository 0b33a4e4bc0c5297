"""Lightning's WandbLogger, set up so the W&B run shows our results natively.

Added to ``lightning.pytorch.loggers.WandbLogger`` (which is kept for everything else):
- ``define_metric``: epoch metrics (``val/*``, ``train/loss|acc|rate_*``, ``time/epoch_s``) are plotted
  against ``epoch``; the summary of ``val/acc`` is its max and of ``val/loss`` its min (not the
  last epoch's value).
- the code saved as a W&B code artifact ``qsnn-source`` (``log_code``): the ``qsnn`` package and
  the entry scripts beside it (src/train.py, eval.py, report.py), ~60 small files, offline too.
  (``wandb.init(save_code=True)`` saved nothing here: it keeps only the main script, and not
  under Hydra's launch.)
- no ``anonymous`` argument: Lightning passes ``anonymous=None`` to ``wandb.init``, and
  wandb >= 0.19 then warns "The anonymous setting has no effect" on every run.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger

# logged once per epoch by QSNNModule / EpochTimer (train/loss_step is per step: not listed). Named
# exactly where we can: an exact definition always beats Lightning's own glob "*" (x = global step);
# which of two matching globs wins is W&B's choice, so globs are left for the per-layer rates only.
EPOCH_METRICS = ("val/acc_best", "train/loss", "train/acc", "train/sparsity_loss", "time/epoch_s")
EPOCH_GLOBS = ("val/rate_layer*", "train/rate_layer*")
SUMMARY = {"val/acc": "max", "val/loss": "min"}
ENTRY_SCRIPTS = ("train.py", "eval.py", "report.py")


def define_metrics(run) -> None:
    run.define_metric("epoch")
    for name in EPOCH_METRICS + EPOCH_GLOBS:
        run.define_metric(name, step_metric="epoch", step_sync=True)
    for name, how in SUMMARY.items():
        run.define_metric(name, step_metric="epoch", step_sync=True, summary=how)


def run_info(run) -> dict[str, Any]:
    """Where a W&B run lives: {id, mode, dir (the run's local dir), url (online only), sync (command)}."""
    offline = bool(getattr(run.settings, "_offline", False)) or run.settings.mode in ("offline", "dryrun")
    run_dir = str(Path(run.dir).parent)  # run.dir is <run dir>/files
    url = None if offline else getattr(run, "url", None)
    return {"id": run.id, "mode": "offline" if offline else "online", "dir": run_dir, "url": url,
            "sync": f"wandb sync {run_dir}" if offline else None}


class WandbLogger(LightningWandbLogger):
    def __init__(self, *args: Any, log_code: bool = True, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if not self._wandb_init.get("anonymous"):
            self._wandb_init.pop("anonymous", None)
        self._log_code = log_code

    @property
    def experiment(self):
        fresh = self._experiment is None
        run = super().experiment
        if fresh and self._experiment is not None and hasattr(run, "define_metric"):  # not on ranks > 0
            define_metrics(run)
            if self._log_code:
                save_code(run)
        return run


def save_code(run) -> None:
    pkg = Path(__file__).resolve().parents[1]  # the qsnn package (this file is qsnn/run/wandb_logger.py)
    src = pkg.parent if (pkg.parent / "train.py").is_file() else pkg  # src/ of a checkout; never site-packages

    def include(path: str, root: str | None = None) -> bool:
        rel = Path(path).resolve().relative_to(src)
        return rel.suffix == ".py" and (src == pkg or rel.parts[0] == "qsnn" or str(rel) in ENTRY_SCRIPTS)

    run.log_code(root=str(src), name="qsnn-source", include_fn=include)

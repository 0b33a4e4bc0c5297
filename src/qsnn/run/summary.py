"""What a job writes about itself: ``summary.json`` (status, overrides, group choices, metrics,
history), and the final state of its loggers (the W&B run's status and summary, then closed).
Written atomically (temp file + rename), by rank 0 only; the sweep report reads these files.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from qsnn.errors import RunDirBusy
from qsnn.run.run_dir import atomic_write_text, holds_run

log = logging.getLogger("qsnn")


def hydra_info() -> dict[str, Any]:
    """Overrides and group choices of the running Hydra job (empty outside Hydra)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        hc = HydraConfig.get()
    except (ImportError, ValueError):
        return {"overrides": [], "choices": {}, "job_num": None}
    choices = {k: v for k, v in hc.runtime.choices.items() if not k.startswith("hydra/") and v is not None}
    return {"overrides": list(hc.overrides.task), "choices": choices, "job_num": hc.job.get("num")}


def is_rank_zero() -> bool:
    """False in the extra processes of a multi-device run (Lightning sets their rank from the
    env: LOCAL_RANK/RANK/SLURM_PROCID, then from the strategy)."""
    from lightning.pytorch.utilities import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def error_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}".splitlines()[0]


def read_summary(out_dir: str | Path, since: float | None = None) -> dict[str, Any] | None:
    """A job dir's summary.json as a dict; None when it is missing, unreadable or not a job summary,
    or (``since``: a time.time()) older than ``since``. The report's reader (``report_load``) says
    why instead; the launchers, the console and the study only need to know what is there."""
    path = Path(out_dir) / "summary.json"
    try:
        if since is not None and path.stat().st_mtime < since:
            return None
        s = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return s if isinstance(s, dict) else None


def write_summary(out_dir: Path, summary: dict[str, Any]) -> None:
    atomic_write_text(Path(out_dir) / "summary.json", json.dumps(summary, indent=1, default=str))


def record_refusal(out_dir: Path, e: Exception, info: dict[str, Any] | None = None) -> dict[str, Any]:
    """A sweep's refused job still gets a summary saying why; never over a previous run's files, nor
    in a dir another job is running in (RunDirBusy)."""
    summary = {"status": "failed", **(info if info is not None else hydra_info()), "error": error_line(e),
               "metrics": {}, "output_dir": str(out_dir)}
    if isinstance(e, RunDirBusy):
        return summary
    if is_rank_zero() and not holds_run(out_dir) and not (Path(out_dir) / "summary.json").exists():
        write_summary(out_dir, summary)
    return summary


def metrics_of(trainer) -> dict[str, float]:
    """The trainer's logged metrics as floats."""
    if trainer is None:
        return {}
    out = {}
    for k, v in trainer.callback_metrics.items():
        try:
            out[k] = float(v)
        except (TypeError, ValueError):
            pass
    return out


def _wandb_runs(loggers: list):
    return [lg for lg in loggers if type(lg).__name__ == "WandbLogger" and getattr(lg, "_experiment", None) is not None]


def wandb_info(loggers: list) -> dict[str, Any] | None:
    """The job's W&B run: {id, mode, dir, url, sync} (qsnn.run.wandb_logger.run_info), None without one."""
    from qsnn.run.wandb_logger import run_info

    runs = _wandb_runs(loggers)
    return run_info(runs[0].experiment) if runs else None


def close_loggers(loggers: list, summary: dict[str, Any]) -> None:
    """Put the job's status (and why it failed), its test and cost metrics and its times in its W&B
    run summary, close the run with a matching exit code (W&B shows a failed job as failed), then
    finalize every logger; a logger failing to close must not hide the run's result."""
    metrics = {k: v for k, v in (summary.get("metrics") or {}).items() if k.startswith(("test/", "cost/"))}
    times = {f"time/{k}": summary[k] for k in ("startup_s", "fit_s", "wall_s") if k in summary}
    for lg in _wandb_runs(loggers):
        try:
            lg.experiment.summary.update({"status": summary["status"], "error": summary.get("error", ""),
                                          **metrics, **times})
            lg.experiment.finish(exit_code=0 if summary["status"] == "ok" else 1)
        except Exception as e:  # W&B trouble must not hide the run's own result
            log.warning("W&B: could not record the job's status (%s)", error_line(e))
    for lg in loggers:
        try:
            lg.finalize("success")
        except Exception:
            pass
    try:
        import wandb

        if wandb.run is not None:
            wandb.finish()
    except Exception:
        pass

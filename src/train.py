"""Train a quantized SNN. Examples:

    python src/train.py                                   # digits, 4-bit fcsnn, W&B offline
    python src/train.py -m quant.bits=4,32 sched=cosine_restart
    python src/train.py experiment=qsnn_mnist data.root=/path/to/mnist
"""
from __future__ import annotations

import logging
import math
import sys
import time
from pathlib import Path

import hydra
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig

import qsnn.run.config  # noqa: F401  (registers the ${wandb_mode:} / ${wandb_group:} / ${run_name:} resolvers)
from qsnn.errors import USER_ERRORS
from qsnn.nn.cpu import retain_freed_memory
from qsnn.run import interrupt
from qsnn.run.console import print_config, print_run_summary
from qsnn.run.job_console import into_logs, job_line
from qsnn.run.quiet import silence_library_noise
from qsnn.run.runner import train
from qsnn.run.summary import hydra_info, read_summary

log = logging.getLogger("qsnn")


def is_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.get().mode == RunMode.MULTIRUN


def job_num() -> int:
    from hydra.core.hydra_config import HydraConfig

    return int(HydraConfig.get().job.get("num") or 0)


def run_job(cfg: DictConfig) -> dict | None:
    """``train(cfg)`` with the entry point's handling of how it ends. A multirun's failed job returns
    a summary saying why (the sweep goes on); a single run's user error is one line; an interrupted
    job returns None (its summary.json says so)."""
    try:
        with interrupt.busy():
            if cfg.get("print_config", True) and (not is_multirun() or job_num() == 0):  # a multirun: once
                print_config(cfg)
            return train(cfg)
    except SIGTERMException:  # stop (a sweep too); summary.json says interrupted, last.ckpt is intact
        print(f"interrupted by SIGTERM: continue with resume=true (output dir {cfg.paths.output_dir})",
              file=sys.__stderr__)
        sys.exit(143)
    except (KeyboardInterrupt, SystemExit) as e:  # Ctrl-C (Lightning exits 1 after it): summary.json says so
        if not interrupt.caused(e):
            raise
        return interrupt.job_interrupted()  # the command the user started: one line, exit 130
    except Exception as e:
        line = f"{type(e).__name__}: {e}".splitlines()[0]
        if is_multirun():  # one failed job must not stop the sweep; its summary.json says why
            log.error("job failed: %s", line)
            return {"status": "failed", "error": line, **hydra_info()}
        if isinstance(e, USER_ERRORS):
            print(f"error: {line}", file=sys.stderr)
            sys.exit(1)
        raise


def multirun_job(cfg: DictConfig) -> dict | None:
    """A multirun's job: its output goes to its own train.log, the console gets one line when it ends
    (``qsnn.run.job_console``); the multirun's table comes at its end (qsnn.run.console.MultirunSummary)."""
    out, t0 = Path(cfg.paths.output_dir), time.time()
    summary = None
    try:
        with into_logs([out / "train.log"]):
            summary = run_job(cfg)
    finally:  # the console is back: the job's one line, however it ended
        written = summary or read_summary(out, since=t0 - 1)  # interrupted: what this job wrote
        if written:
            print(job_line(written, job_num()), flush=True)
    return summary


@hydra.main(version_base="1.3", config_path="../conf", config_name="train.yaml")
def main(cfg: DictConfig) -> float | None:
    interrupt.install()  # a multirun's worker process too: Ctrl-C interrupts its job (qsnn.run.interrupt)
    if interrupt.requested():  # Ctrl-C came while this job waited in a queue: it does not start
        return interrupt.job_interrupted()
    silence_library_noise()
    retain_freed_memory()  # ~19% less CPU per step: no page faults on each step's activations
    if is_multirun():
        summary = multirun_job(cfg)
        if summary is None or summary["status"] != "ok":
            return None  # Optuna records None as a failed trial; NaN would crash hydra-optuna-sweeper 1.3
    else:
        summary = run_job(cfg)
        print_run_summary(summary)
    value = summary["metrics"].get(cfg.get("optimized_metric") or "", math.nan)
    return value if math.isfinite(value) else None  # same: a NaN objective is a failed trial


if __name__ == "__main__":
    interrupt.install(main=True)
    try:
        main()
    except KeyboardInterrupt:  # before or between jobs, or a second Ctrl-C
        interrupt.stop()
    if interrupt.requested():  # a multirun whose workers ended their interrupted jobs
        interrupt.stop()

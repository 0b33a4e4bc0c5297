"""Run the jobs of one setting (same config but ``seed`` and optim/sched values) as one stacked model;
one summary each.

``train_group(cfgs, infos)`` is what the ``stacked`` launcher calls in its worker process: each
job is validated and set up as ``runner.train`` would (a job that fails there fails alone), a
finished job is skipped under ``resume=true``, seeds resumed from their ``last.ckpt`` continue
where they stopped (seeds at different epochs run as separate stacked groups), and the rest
train together (``loop.StackedFit``). Every member's output dir is locked as ``runner.train`` locks
its own, so two sweeps on one dir never train a job twice, whichever launchers they use.
"""
from __future__ import annotations

import logging
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from omegaconf import DictConfig

from qsnn.run.checkpoint_io import resume_point
from qsnn.run.resume import check_output_dir, check_same_config, finished_summary, wants_resume
from qsnn.run.run_dir import locked
from qsnn.run.summary import record_refusal
from qsnn.run.validate import validate
from qsnn.stacked.batches import setup_runtime
from qsnn.stacked.loop import StackedFit
from qsnn.stacked.seeds import SeedJob, SeedRNG

log = logging.getLogger("qsnn")


def _restore(job: SeedJob, ckpt: dict[str, Any], rng: SeedRNG, idx: int) -> int:
    """Load a stacked checkpoint into the seed; returns the epoch to continue from."""
    st = ckpt["qsnn_stacked"]
    job.module.load_state_dict(ckpt["state_dict"])
    job.history.load_state_dict(st)
    job.monitor.load_state_dict(st.get("dead_network") or {})
    job.best_score, job.best_path = st["best_score"], st["best_path"]
    if job.es is not None and st["early_stopping"]:
        job.es.load_state_dict(st["early_stopping"])
    kind, keys, pos, has_gauss, gauss = st["rng"]["numpy"]
    rng.states[idx] = (st["rng"]["torch"], (kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss),
                       st["rng"]["python"])
    job.stop_flag = st["stop_flag"]
    job.ckpt = ckpt
    return int(st["epoch"]) + 1


def _prepare(cfg: DictConfig, info: dict, device, dtype, rng: SeedRNG, t0: float,
             locks: ExitStack) -> tuple[SeedJob, dict | None, int]:
    job = SeedJob(cfg, info, t0)
    validate(cfg)
    locks.enter_context(locked(job.out_dir))  # held until the group ends; a busy dir raises RunDirBusy
    check_output_dir(cfg)
    job.out_dir.mkdir(parents=True, exist_ok=True)
    ckpt, start = None, 0
    if wants_resume(cfg):  # the same checks as runner.train, before the job writes anything
        check_same_config(cfg, job.out_dir, info.get("choices"))
        done = finished_summary(job.out_dir, info["overrides"])
        if done is not None:
            log.info("%s finished already (summary.json status ok): skipped", job.out_dir)
            return job, done, 0
        # last.ckpt (with Lightning's ModelCheckpoint: the last best epoch, replayed), else the newest intact one
        last, ckpt = resume_point(job.out_dir, trust=bool(cfg.get("trust_checkpoint", False)))
        job.summary["resumed_from"] = str(last) if last else None
    try:
        idx = job.setup(dtype, device, rng)
    except BaseException as e:  # Ctrl-C while it builds: the job has written its config already
        if not isinstance(e, Exception):
            job.interrupted(e)
        raise
    if ckpt is not None:
        if "qsnn_stacked" not in ckpt:
            raise ValueError(f"{job.summary['resumed_from']} was not written by launcher=stacked: resume this job "
                             "with the launcher that started it")
        start = _restore(job, ckpt, rng, idx)
    job.rng_index = idx
    return job, None, start


def train_group(cfgs: list[DictConfig], infos: list[dict], on_stacked: Callable | None = None) -> list[dict]:
    """Train the jobs ``cfgs`` (one setting, one seed each) stacked; returns their summaries in order.
    Each job's output dir is locked (``qsnn.run.run_dir.locked``) from before it is looked at until
    the group ends, however it ends; a job whose dir another job holds is refused alone."""
    t0 = time.perf_counter()
    threads_before = torch.get_num_threads()
    summaries: list[dict | None] = [None] * len(cfgs)
    by_start: dict[int, list[tuple[int, SeedJob]]] = {}
    with ExitStack() as locks:
        try:
            device, dtype = setup_runtime(cfgs[0])
            rng = SeedRNG()
            for k, (cfg, info) in enumerate(zip(cfgs, infos)):
                try:
                    job, done, start = _prepare(cfg, info, device, dtype, rng, t0, locks)
                except Exception as e:  # this job fails alone, before any training
                    summaries[k] = _failed(cfg, info, e)
                    continue
                if done is not None:
                    summaries[k] = done
                else:
                    by_start.setdefault(start, []).append((k, job))
            for start, group in sorted(by_start.items()):
                _fit(group, rng, device, dtype, start, t0, on_stacked)
                for k, job in group:
                    summaries[k] = job.summary
        except BaseException as e:  # Ctrl-C or SIGTERM: the jobs built but not fitted yet say so too
            if not isinstance(e, Exception):
                for job in (j for group in by_start.values() for _, j in group if not j.done):
                    job.interrupted(e)
            raise
        finally:
            torch.set_num_threads(threads_before)
    return summaries


def _fit(group, rng: SeedRNG, device, dtype, start: int, t0: float, on_stacked) -> None:
    jobs = [job for _, job in group]
    sub = SeedRNG()  # this group's seeds, in its order
    sub.states = [rng.states[j.rng_index] for j in jobs]
    try:
        fit = StackedFit(jobs, sub, device, dtype, on_stacked)
    except Exception as e:
        for s, job in enumerate(jobs):
            job.finish(sub, s, error=e)
        return
    if start:
        c0 = jobs[0].ckpt
        fit.epoch, fit.global_step = start, int(c0["global_step"])
        fit.stop_flag = [bool(j.stop_flag) for j in jobs]
        fit.opt.load([(j.ckpt["optimizer_states"][0], (j.ckpt["lr_schedulers"] or [None])[0]) for j in jobs])
    t_fit = time.perf_counter()
    for job in jobs:
        job.times(startup_s=t_fit - t0)
    try:
        fit.run(t_fit)
    except BaseException as e:  # an error of the group (or Ctrl-C/SIGTERM): every unfinished seed says so
        for s, job in enumerate(jobs):
            if not job.done:
                if isinstance(e, Exception):
                    job.finish(sub, s, error=e)
                else:
                    job.interrupted(e)
        raise


def _failed(cfg: DictConfig, info: dict, e: Exception) -> dict:
    summary = record_refusal(Path(cfg.paths.output_dir), e, info)  # never over a previous run's files
    log.error("job failed: %s", summary["error"])
    return summary

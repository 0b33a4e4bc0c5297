"""Group a multirun's jobs by everything but ``seed`` and the optimizer's and schedule's
hyperparameters (``member_key``); run each group in one worker process.

In the worker each job still goes through Hydra's ``run_job`` (its output dir, ``.hydra/``
files, logging, env), with a task that only resolves the job's config; then the group trains
stacked (``qsnn.stacked.group.train_group``) and each job's JobReturn gets its own result (the
``optimized_metric``, or None for a failed job, as ``src/train.py`` returns). A group of one job,
or a setting that cannot stack (``qsnn.stacked.support.why_not_stacked``: one log line saying
why), runs job by job through the real task function, as the basic launcher would.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Sequence

from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import (JobReturn, JobStatus, configure_log, env_override, filter_overrides, run_job,
                              setup_globals)
from joblib import Parallel, delayed
from omegaconf import DictConfig, OmegaConf, open_dict

from qsnn.stacked.support import member_key

log = logging.getLogger(__name__)


def seed_groups(job_overrides: Sequence[Sequence[str]], max_seeds: int) -> list[list[tuple[int, list[str]]]]:
    """Jobs whose overrides differ only in member keys (``member_key``: the seed, the optimizer's and
    schedule's hyperparameters), in first-seen order, at most ``max_seeds`` each."""
    groups: dict[tuple, list] = {}
    for idx, ov in enumerate(job_overrides):
        key = tuple(o for o in ov if not member_key(o.split("=")[0].lstrip("+~")))
        groups.setdefault(key, []).append((idx, list(ov)))
    return [g[i:i + max_seeds] for g in groups.values() for i in range(0, len(g), max(max_seeds, 1))]


def launch(launcher, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
    setup_globals()
    configure_log(launcher.config.hydra.hydra_logging, launcher.config.hydra.verbose)
    sweep_dir = Path(str(launcher.config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    groups = seed_groups(job_overrides, launcher.max_seeds)
    log.info(f"Stacked launcher: {len(job_overrides)} jobs in {len(groups)} groups (seeds and optim/sched values of one "
             "setting stacked), "
             f"n_jobs={launcher.n_jobs}, sweep output dir: {sweep_dir}")
    for g in groups:
        log.info("\t#%s : %s", ",".join(str(initial_job_idx + i) for i, _ in g), " ".join(filter_overrides(g[0][1])))
    state = Singleton.get_state()
    args = (launcher.hydra_context, launcher.config, launcher.task_function, state)
    grouped = [[(initial_job_idx + i, ov) for i, ov in g] for g in groups]
    if launcher.n_jobs == 1 or len(groups) == 1:
        results = [run_group(g, *args) for g in grouped]
    else:
        results = Parallel(n_jobs=launcher.n_jobs, backend="loky")(delayed(run_group)(g, *args) for g in grouped)
    by_idx = {idx: r for g, rs in zip(grouped, results) for (idx, _), r in zip(g, rs)}
    return [by_idx[initial_job_idx + i] for i in range(len(job_overrides))]


def _sweep_config(hydra_context, config: DictConfig, idx: int, overrides: list[str]) -> DictConfig:
    cfg = hydra_context.config_loader.load_sweep_config(config, list(overrides))
    with open_dict(cfg):
        cfg.hydra.job.id = f"{cfg.hydra.job.name}_{idx}"
        cfg.hydra.job.num = idx
    HydraConfig.instance().set_config(cfg)
    return cfg


def _run(hydra_context, cfg: DictConfig, task) -> JobReturn:
    return run_job(hydra_context=hydra_context, config=cfg, task_function=task, job_dir_key="hydra.sweep.dir",
                   job_subdir_key="hydra.sweep.subdir")


def _resolve(cfg: DictConfig) -> tuple[DictConfig, dict[str, Any]]:
    """Inside the job (HydraConfig set): the job's fully resolved config and its Hydra info."""
    from qsnn.run.summary import hydra_info

    return OmegaConf.create(OmegaConf.to_container(cfg, resolve=True)), hydra_info()


def run_group(jobs: list[tuple[int, list[str]]], hydra_context, config, task_function, state) -> list[JobReturn]:
    from qsnn.run import interrupt

    setup_globals()
    Singleton.set_state(state)
    interrupt.install()  # in a worker process: Ctrl-C interrupts the group (qsnn.run.interrupt)
    if interrupt.requested():  # Ctrl-C came while this group waited in the queue: it does not start
        interrupt.job_interrupted()
        return [JobReturn(overrides=ov, status=JobStatus.COMPLETED) for _, ov in jobs]
    if len(jobs) == 1:
        return [_run(hydra_context, _sweep_config(hydra_context, config, i, ov), task_function) for i, ov in jobs]
    from qsnn.nn.cpu import retain_freed_memory
    from qsnn.run.job_console import into_logs, job_line
    from qsnn.stacked.group import train_group
    from qsnn.stacked.support import why_not_stacked

    rets = [_run(hydra_context, _sweep_config(hydra_context, config, i, ov), _resolve) for i, ov in jobs]
    failed = [r for r in rets if r.status != JobStatus.COMPLETED]
    why = f"resolving its config failed ({failed[0]._return_value})" if failed else \
        why_not_stacked(rets[0].return_value[0])
    if why:
        log.warning("stacked launcher: %d seeds of %s run job by job: %s", len(jobs),
                    " ".join(filter_overrides(jobs[0][1])) or "the base config", why)
        return [_run(hydra_context, _sweep_config(hydra_context, config, i, ov), task_function) for i, ov in jobs]
    retain_freed_memory()
    cfgs, infos = zip(*(r.return_value for r in rets))
    logs = [Path(cfg.paths.output_dir) / "train.log" for cfg in cfgs]
    try:
        # as run_job sets it (WANDB_SILENT, ...); the group's output into every member's log (qsnn.run.job_console)
        with interrupt.busy(), env_override(config.hydra.job.env_set), into_logs(logs, keep_file_handlers=False):
            summaries = train_group(list(cfgs), list(infos))
    except (KeyboardInterrupt, SystemExit) as e:  # each job's summary.json says interrupted
        if not interrupt.caused(e):
            raise
        interrupt.job_interrupted()  # the command the user started: one line, exit 130
        summaries = [{} for _ in cfgs]  # a worker: its parent collects the group, as for a failed job
    for (idx, _), summary in zip(jobs, summaries):  # one console line per job
        if summary:
            print(job_line(summary, idx), flush=True)
    for r, cfg, summary in zip(rets, cfgs, summaries):
        value = summary.get("metrics", {}).get(cfg.get("optimized_metric") or "", math.nan)
        ok = summary.get("status") == "ok" and isinstance(value, (int, float)) and math.isfinite(value)
        r.return_value = value if ok else None  # a failed job is None, as src/train.py returns it
    return rets

"""``hydra/sweeper=list``: run an explicit list of jobs, each its own set of overrides.

Hydra's basic sweeper runs a grid (the product of value lists); a protocol round is not a grid
(each arm at its own tuned LR and schedule parameters, each with its own seeds). This sweeper
reads the jobs from a YAML file (a list of override lists) and hands them to the configured
launcher as one batch, so joblib, submitit or the stacked launcher apply unchanged. An override
``hydra.sweep.subdir=...`` inside a job names that job's directory (the study names jobs by
arm/phase/seed, so re-running a round finds its finished jobs). Command-line task overrides
(e.g. ``resume=true``) are appended to every job.

    python src/train.py -m hydra/sweeper=list hydra.sweeper.jobs_file=jobs.yaml
"""

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml
from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper
from omegaconf import OmegaConf

log = logging.getLogger(__name__)


@dataclass
class ListSweeperConf:
    _target_: str = "hydra_plugins.qsnn_list_sweeper.list_sweeper.ListSweeper"
    jobs_file: Optional[str] = None  # YAML: a list of jobs, each a list of "key=value" overrides
    params: Optional[Dict[str, str]] = None  # a study's grid: ignored (the list defines the jobs)


ConfigStore.instance().store(group="hydra/sweeper", name="list", node=ListSweeperConf, provider="qsnn")


def read_jobs(path: str | None) -> list[list[str]]:
    if not path:
        raise ValueError("hydra/sweeper=list needs hydra.sweeper.jobs_file=<yaml list of override lists>")
    jobs = yaml.safe_load(Path(path).read_text()) or []
    if not isinstance(jobs, list) or not all(isinstance(j, list) for j in jobs):
        raise ValueError(f"hydra.sweeper.jobs_file={path}: expected a YAML list of override lists")
    return [[str(o) for o in j] for j in jobs]


def one_per_group(jobs: list[list[str]]) -> list[list[str]]:
    """The first job of each group of jobs that differ only in ``seed`` and optimizer/schedule values
    (the stacked launcher's groups, ``qsnn.stacked.support.member_key``): whether a job composes
    depends on its keys and config-group choices, not on those values, and composing every job
    of a study's round in this process took ~0.4 s each (30-40 s per 80-job round)."""
    from qsnn.stacked.support import member_key

    seen, out = set(), []
    for job in jobs:
        key = tuple(o if not member_key(o.split("=")[0].lstrip("+~")) else o.split("=")[0] for o in job)
        if key not in seen:
            seen.add(key)
            out.append(job)
    return out


class ListSweeper(Sweeper):
    def __init__(self, jobs_file: Optional[str] = None, params: Optional[Dict[str, str]] = None) -> None:
        super().__init__()
        self.jobs_file = jobs_file
        self.config = self.launcher = self.hydra_context = None

    def setup(self, *, hydra_context, task_function, config) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: List[str]) -> Any:
        jobs = [job + list(arguments) for job in read_jobs(self.jobs_file)]
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        if not jobs:
            log.info("no jobs in %s: nothing to run", self.jobs_file)
            return []
        self.validate_batch_is_legal(one_per_group(jobs))
        results = self.launcher.launch(jobs, initial_job_idx=0)
        for r in results:
            _ = r.return_value  # re-raises a job's exception (train.py already turns them into None)
        return [results]

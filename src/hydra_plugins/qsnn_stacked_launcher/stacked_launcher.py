"""The ``stacked`` Hydra launcher: registered like hydra-joblib-launcher (a ``hydra_plugins``
namespace package holding a ``Launcher`` subclass and its ConfigStore entry)."""

from dataclasses import dataclass
from typing import Any, Optional, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


@dataclass
class StackedLauncherConf:
    _target_: str = "hydra_plugins.qsnn_stacked_launcher.stacked_launcher.StackedLauncher"
    # settings (groups of seeds) trained at once, each in its own worker process (joblib/loky)
    n_jobs: int = 2
    # the most seeds stacked in one model; larger groups are split into chunks of this size
    max_seeds: int = 64


ConfigStore.instance().store(group="hydra/launcher", name="stacked", node=StackedLauncherConf,
                             provider="qsnn_stacked_launcher")


class StackedLauncher(Launcher):
    def __init__(self, n_jobs: int = 2, max_seeds: int = 64, **kwargs: Any) -> None:
        self.n_jobs, self.max_seeds = int(n_jobs), int(max_seeds)
        self.config: Optional[DictConfig] = None
        self.task_function: Optional[TaskFunction] = None
        self.hydra_context: Optional[HydraContext] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.task_function, self.hydra_context = config, task_function, hydra_context

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from . import _core

        return _core.launch(self, job_overrides, initial_job_idx)

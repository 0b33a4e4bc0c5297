"""OmegaConf resolvers used by conf/ (registered on import, before Hydra composes).

- ``${wandb_mode:}``  : $WANDB_MODE if set, else "online" when an API key is configured
                        (WANDB_API_KEY or a ~/.netrc entry), else "offline". Never prompts.
- ``${wandb_group:}`` : the multirun's sweep-dir name (all jobs of one multirun share it);
                        the run dir name for a single run.
- ``${run_name:}``    : the job's overrides as a name, e.g. ``quant.bits=4,sched=cosine``; without
                        overrides the chosen options, e.g. ``digits-fcsnn-uniform-fast_sigmoid-cosine``.
"""
from __future__ import annotations

import netrc
import os
from pathlib import Path

from omegaconf import OmegaConf


def wandb_mode() -> str:
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    try:
        rc = netrc.netrc(os.environ.get("NETRC", Path.home() / ".netrc"))
        if any("wandb" in host for host in rc.hosts):
            return "online"
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        pass
    return "offline"


def wandb_group() -> str | None:
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
    except (ImportError, ValueError):
        return None
    if hc.mode == RunMode.MULTIRUN:
        return Path(hc.sweep.dir).name
    return Path(hc.runtime.output_dir).name


NAME_GROUPS = ("data", "model", "quant", "surrogate", "sched")


def run_name() -> str | None:
    """A readable run name: the job's command-line overrides, else its main group choices
    (a W&B run without a name shows up unnamed until it is synced). None outside Hydra."""
    try:
        from hydra.core.hydra_config import HydraConfig

        hc = HydraConfig.get()
    except (ImportError, ValueError):
        return None
    if hc.job.override_dirname:
        return hc.job.override_dirname
    choices = hc.runtime.choices
    return "-".join(str(choices[g]) for g in NAME_GROUPS if choices.get(g)) or None


def register_resolvers() -> None:
    for name, fn in (("wandb_mode", wandb_mode), ("wandb_group", wandb_group), ("run_name", run_name)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


register_resolvers()

"""What ``src/eval.py`` tests a checkpoint with: the config of the run that made it.

A checkpoint inside its run dir (``<run>/checkpoints/x.ckpt``) is tested with that run's
``config_resolved.yaml`` (single runs, multirun and stacked jobs alike), so ``src/eval.py
ckpt_path=X`` needs no other argument. The command line changes only what may differ at
evaluation (``EVAL_TIME``: data root, batch sizes, workers, device, test batches, export, cost,
paths, logging); any other key it gives must be the run's value, else one CheckpointError line
(``check_eval_config``). A checkpoint without a config_resolved.yaml beside it is tested with the
command line's config, as before.

That file is input someone may hand you, like the checkpoint: before anything is imported or
built, every ``_target_`` in it must be a callable conf/ itself names (``conf_targets``) and no
value may be an interpolation (a resolved config holds none); otherwise one CheckpointError line,
unless ``trust_checkpoint=true``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import yaml
from omegaconf import DictConfig, OmegaConf

from qsnn.errors import CheckpointError
from qsnn.run.known_keys import conf_targets
from qsnn.run.resume import EVAL_TIME, check_eval_config, under

TRUST = "if you trust the file, add trust_checkpoint=true"
# what describes this evaluation, never the run: always the command line's
THIS_EVAL = ("ckpt_path", "trust_checkpoint", "export", "task_name", "paths", "trainer.default_root_dir")


def run_config_file(ckpt_path: str | Path) -> Path | None:
    """``<run>/config_resolved.yaml`` for ``<run>/checkpoints/x.ckpt``, if that file exists."""
    ckpt = Path(ckpt_path).resolve()
    path = ckpt.parent.parent / "config_resolved.yaml"
    return path if ckpt.parent.name == "checkpoints" and path.is_file() else None


def eval_config(cfg: DictConfig, overrides: list[str], choices: dict) -> tuple[DictConfig, bool]:
    """(the config to test ``cfg.ckpt_path`` with, whether it is its run's config). ``overrides``:
    the command line's (Hydra's task overrides); ``choices``: its group choices."""
    path = run_config_file(cfg.ckpt_path)
    if path is None:
        return cfg, False
    try:
        saved = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise CheckpointError(f"{path}: cannot read the run's config ({type(e).__name__}); test the checkpoint "
                              "from another dir to use the command line's config instead") from None
    if not isinstance(saved, dict):
        raise CheckpointError(f"{path}: not a run config (a mapping of keys expected)")
    if not cfg.get("trust_checkpoint", False):
        check_run_file(saved, path)
    given = [o.split("=", 1)[0].lstrip("+~") for o in overrides]
    given = [k for k in given if not k.startswith("hydra.")]
    check_eval_config(cfg, cfg.ckpt_path, {}, choices, given=given)  # a trained value given here must be the run's
    out = OmegaConf.create(saved)
    for key in dict.fromkeys((*THIS_EVAL, *(k for k in given if under(k, EVAL_TIME)))):
        value = OmegaConf.select(cfg, key, default=None)
        value = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
        OmegaConf.update(out, key, value, merge=False, force_add=True)
    OmegaConf.set_struct(out, True)
    return out, True


def _leaves(node: Any, key: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, f"{key}.{k}" if key else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _leaves(v, f"{key}.{i}")
    else:
        yield key, node


def check_run_file(saved: dict, path: Path) -> None:
    """Refuse a run config that names a callable conf/ does not, or holds an interpolation."""
    targets = conf_targets()
    known = set().union(*targets.values())
    for key, value in _leaves(saved):
        if isinstance(value, str) and "${" in value:
            raise CheckpointError(f"{path}: {key}={value!r} is not allowed: a resolved config holds no "
                                  f"interpolations; {TRUST}")
        if key.rpartition(".")[2] == "_target_" and value not in known:
            at = ".".join(p for p in key.split(".")[:-1] if not p.isdigit())
            use = ", ".join(sorted(targets.get(at, ()))[:4]) or "a callable conf/ names"
            raise CheckpointError(f"{path}: {key}={value!r} is not allowed: use {use} (the callables conf/ names "
                                  f"there); {TRUST}")

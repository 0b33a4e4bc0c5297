"""Continue a job in its own output dir: which checkpoint, which W&B run, which RNG state.

``resume=true`` (or ``ckpt_path=last``) with the job's output dir (``hydra.run.dir=...``, or
``hydra.sweep.dir=...`` for a multirun) continues from ``checkpoints/last.ckpt``, or when a failed
write left none, from the newest intact checkpoint there (``qsnn.run.checkpoint_io.resume_point``).
Lightning's checkpoint restores epoch, optimizer, LR-schedule position and callback states (early
stopping, best checkpoint, history); ``RNGState`` adds the torch/numpy/python RNG, which
Lightning does not restore. The W&B run id lives in ``wandb_run_id`` next to the run so the
resumed job logs to the same W&B run (WandbLogger passes ``resume="allow"``).

Before anything is built, a resume compares its config with the run's ``config_resolved.yaml``
(``check_same_config``) and refuses a change outside ``SAFE_ON_RESUME`` with one line listing
it; ``check_eval_config`` does the same for ``src/eval.py``: the keys its command line gives must
hold the run's values, apart from what may differ at evaluation (``EVAL_TIME``).
"""
from __future__ import annotations

import json
import random
import secrets
import string
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from qsnn.errors import CheckpointError, ConfigError, ResumeRefused
from qsnn.run.known_keys import is_trainer_default
from qsnn.run.summary import read_summary

# Keys that may differ from the run's saved config_resolved.yaml on resume=true: how long to
# train, where files live, what is printed or logged. Any other change is refused (it would
# continue the run as another experiment). docs/reliability.md "Resume a run or a sweep" lists the same.
SAFE_ON_RESUME = (
    "resume", "ckpt_path", "trust_checkpoint", "train", "test", "print_config", "torch_threads",
    "optimized_metric", "paths", "data.root", "data.num_workers", "logger",
    "trainer.max_epochs", "trainer.max_steps", "trainer.max_time", "trainer.enable_progress_bar",
    "trainer.log_every_n_steps", "callbacks.progress_bar", "callbacks.epoch_timer", "callbacks.lr_monitor",
)


class RNGState(L.Callback):
    """Saves and restores the global torch, numpy and python RNG states with each checkpoint."""

    # plain tensors, lists and ints only: checkpoints must stay loadable with torch.load(weights_only=True)
    def state_dict(self) -> dict[str, Any]:
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        return {"torch": torch.get_rng_state(), "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos,
                                                          has_gauss, gauss], "python": random.getstate()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        torch.set_rng_state(state["torch"])
        kind, keys, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
        random.setstate(state["python"])


def wants_resume(cfg) -> bool:
    return bool(cfg.get("resume")) or cfg.get("ckpt_path") == "last"


def finished_summary(out_dir: Path, overrides: list[str]) -> dict | None:
    """The job's summary.json if it finished ok with the same overrides (so a re-launched sweep
    skips it); with other overrides (e.g. more trainer.max_epochs) the job goes on from last.ckpt."""
    summary = read_summary(out_dir)
    if summary is None:
        return None

    def same(o):
        return sorted(x for x in o if x.split("=")[0].lstrip("+~") not in ("resume", "ckpt_path"))
    ok = summary.get("status") == "ok" and same(summary.get("overrides", [])) == same(overrides)
    return summary if ok else None


def wandb_run_id(out_dir: Path) -> str:
    """The job's W&B run id: read from the output dir, or made and saved there on first use."""
    path = Path(out_dir) / "wandb_run_id"
    if path.is_file() and path.read_text().strip():
        return path.read_text().strip()
    # W&B's own id shape (8 chars of a-z0-9); drawn from the OS, not the seeded RNGs
    run_id = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(run_id + "\n")
    return run_id


def check_output_dir(cfg) -> None:
    """Refuse to start a new run over a previous run's results (same hydra.run.dir/sweep.dir
    without resume=true): that would overwrite its checkpoints and summary."""
    out_dir = Path(cfg.paths.output_dir)
    if wants_resume(cfg):
        return
    found = [p.relative_to(out_dir) for p in (out_dir / "summary.json", out_dir / "checkpoints" / "last.ckpt")
             if p.is_file()]
    if found:
        raise ConfigError(f"output dir {out_dir} already holds a run ({found[0]}): add resume=true to continue "
                          f"it (a finished run is skipped), or choose another hydra.run.dir / hydra.sweep.dir")


def flat(d: Any, prefix: str = "") -> dict[str, Any]:
    """{"a.b.c": leaf} of a nested dict (lists are leaves)."""
    if not isinstance(d, dict) or not d:
        return {prefix[:-1]: d} if prefix else {}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(flat(v, f"{prefix}{k}."))
    return out


def under(key: str, prefixes) -> bool:
    """``key`` is one of ``prefixes`` or lies under one (``data.root`` under ``data``)."""
    return any(key == s or key.startswith(s + ".") for s in prefixes)


def _safe(key: str) -> bool:
    return under(key, SAFE_ON_RESUME)


def config_changes(saved: dict, cfg: DictConfig, saved_choices: dict | None = None, choices: dict | None = None,
                   ignore=_safe) -> list[str]:
    """``key: old -> new`` for each key of the resolved ``cfg`` that differs from the run's saved
    config, apart from the keys ``ignore`` accepts (SAFE_ON_RESUME by default). Paths inside the
    old output dir count as the same path in the new one (a moved run dir). A changed group
    choice is listed once (``optim: adam -> sgd``) instead of its keys; keys that only follow
    another key (``${quant.bits}``) are left out."""
    old_dir, new_dir = str(saved.get("paths", {}).get("output_dir", "")), str(cfg.paths.output_dir)
    new = flat(OmegaConf.to_container(cfg, resolve=True))
    old = {k: v.replace(old_dir, new_dir) if old_dir and isinstance(v, str) else v for k, v in flat(saved).items()}
    groups = {g: (a, (choices or {}).get(g)) for g, a in (saved_choices or {}).items()
              if g in (choices or {}) and a != choices[g] and not ignore(g)}
    out = [f"{g}: {a} -> {b}" for g, (a, b) in groups.items()]
    missing = "(absent)"
    keys = [k for k in sorted(set(old) | set(new), key=lambda k: (k.split(".")[0], k))
            if old.get(k, missing) != new.get(k, missing) and not ignore(k) and k.split(".")[0] not in groups
            and not _added_since(k, old, new)]
    derived = [k for k in keys if _interpolated(cfg, k)]
    if len(derived) < len(keys):
        keys = [k for k in keys if k not in derived]
    return out + [f"{k}: {old.get(k, missing)} -> {new.get(k, missing)}" for k in keys]


# keys conf/ gained after runs were saved without them, with the value the code used while they were absent
ADDED_KEYS = {"compile": False, "data.flat_root": False}


def _added_since(key: str, old: dict, new: dict) -> bool:
    """A run saved before conf/ had a key lacks it: a key it lacks that now holds the value the code
    used without it is no change. That value is Lightning's default for a ``trainer.`` key (conf/trainer/
    lists every Trainer argument since), ``ADDED_KEYS``' for the others."""
    if key in old or key not in new:
        return False
    if key.startswith("trainer."):
        return is_trainer_default(key[8:], new[key])
    return key in ADDED_KEYS and new[key] == ADDED_KEYS[key] and type(new[key]) is type(ADDED_KEYS[key])


def _interpolated(cfg: DictConfig, key: str) -> bool:
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    try:
        return isinstance(node, DictConfig) and node._get_node(leaf)._is_interpolation()
    except (AttributeError, KeyError):
        return False


def check_same_config(cfg: DictConfig, out_dir: Path, choices: dict | None = None) -> None:
    """Refuse resume=true when the config differs from the run's saved config_resolved.yaml in a
    key outside SAFE_ON_RESUME (one line listing the changes). A dir without a saved config
    (an older run) passes: the checkpoint's shapes are still checked when it is loaded."""
    import yaml

    path = Path(out_dir) / "config_resolved.yaml"
    try:
        saved = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        return
    except (OSError, yaml.YAMLError) as e:
        raise ResumeRefused(f"resume=true: cannot read {path} ({type(e).__name__}); "
                            f"choose another hydra.run.dir / hydra.sweep.dir") from None
    try:
        saved_choices = json.loads((Path(out_dir) / "summary.json").read_text()).get("choices")
    except (OSError, ValueError, AttributeError):
        saved_choices = None
    changes = config_changes(saved, cfg, saved_choices, choices)
    if changes:
        shown = ", ".join(changes[:8]) + (f" and {len(changes) - 8} more" if len(changes) > 8 else "")
        raise ResumeRefused(f"resume=true in {out_dir}: the config differs from the run's config_resolved.yaml: "
                            f"{shown}; on resume only trainer.max_epochs (and paths, logging) may change: "
                            f"use the run's values, or start a new run in another hydra.run.dir")


# src/eval.py: the keys that define the tested network and its test set must be the run's
EVAL_KEYS = ("model", "quant", "data")
SAFE_FOR_EVAL = ("data.root", "data.batch_size", "data.eval_batch_size", "data.num_workers", "data.cache_dir",
                 "data.download")
# what src/eval.py may set on top of the run's config (qsnn.run.eval_config): where the data is, how the
# test runs (device, batches), what it writes; any other key it is given must be the run's value
EVAL_TIME = (*SAFE_FOR_EVAL, "ckpt_path", "trust_checkpoint", "export", "task_name", "paths", "cost", "logger",
             "callbacks", "trainer.accelerator", "trainer.devices", "trainer.num_nodes", "trainer.strategy",
             "trainer.limit_test_batches", "trainer.enable_progress_bar", "trainer.default_root_dir")


def _not_for_eval(key: str) -> bool:
    return key.split(".")[0] not in EVAL_KEYS or under(key, SAFE_FOR_EVAL)


def check_eval_config(cfg: DictConfig, ckpt_path: str | Path, ckpt: dict, choices: dict | None = None,
                      given: list[str] | None = None) -> None:
    """Refuse to test a checkpoint with another model, quantizer or data config than it was
    trained with: compared with its run's config_resolved.yaml when the checkpoint sits in a
    run dir (``<run>/checkpoints/x.ckpt``), and with the bit width saved in the checkpoint.
    With ``given`` (the keys of the command line, whose config src/eval.py replaces by the run's):
    each of them outside EVAL_TIME, a group choice included, must hold the run's value."""
    import yaml

    ckpt_path = Path(ckpt_path).resolve()
    run = ckpt_path.parent.parent if ckpt_path.parent.name == "checkpoints" else None
    changes, where, saved, saved_choices = [], "the checkpoint", {}, None
    if run is not None and (run / "config_resolved.yaml").is_file():
        try:
            saved = yaml.safe_load((run / "config_resolved.yaml").read_text()) or {}
            saved_choices = json.loads((run / "summary.json").read_text()).get("choices")
        except (OSError, ValueError, yaml.YAMLError, AttributeError):
            pass
    if isinstance(saved, dict) and saved:
        where = f"its run ({run / 'config_resolved.yaml'})"
        ignore = _not_for_eval
        if given is not None:  # a group choice is compared by name (and target), a key by value
            picked = {g for g in given if g in (choices or {})}
            keys = [k for k in given if k not in picked] + [f"{g}._target_" for g in picked]
            ignore = lambda k: under(k, EVAL_TIME) or not (k in picked or under(k, keys))  # noqa: E731
        changes = config_changes(saved, cfg, saved_choices, choices, ignore=ignore)
    bits = (ckpt.get("hyper_parameters") or {}).get("bits")
    if not changes and bits is not None and bits != cfg.quant.bits:
        changes = [f"quant.bits: {bits} -> {cfg.quant.bits}"]
    if changes:
        shown = ", ".join(changes[:8]) + (f" and {len(changes) - 8} more" if len(changes) > 8 else "")
        raise CheckpointError(f"ckpt_path={str(ckpt_path)!r} was trained with other values than given here "
                              f"(from {where}): {shown}; " + ("leave them out: src/eval.py takes the run's own values"
                                                              if given else "pass the training values (e.g. the "
                                                              "run's overrides)"))

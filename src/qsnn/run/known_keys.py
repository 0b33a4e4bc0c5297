"""Which keys a config may hold: a key added with ``+`` goes through the same check as every other.

A key under a node that is instantiated (``_target_``: optim, sched, model, data, loss, surrogate,
quant.weight, logger.*, callbacks.*, trainer) must be an argument of that callable (``inspect``;
a class's ``**kwargs`` are followed up its ``__init__`` chain) or a key conf/ itself gives nodes
with that target (``loss.sparsity``: built by qsnn, not passed on). A key under any other node
(``quant``, ``paths``, ``cost``, the top level) must be one that conf/ or sweeps/ declares there.
Everything under ``extra.`` is free-form (notes, tags: stored in config_resolved.yaml and the W&B
config, read by nothing). An unknown key is one ConfigError naming it and the nearest valid key.

The same scan of conf/ gives ``conf_targets``: every callable conf/ can name, which is what
``src/eval.py`` accepts from a run's config_resolved.yaml (``qsnn.run.eval_config``).
"""
from __future__ import annotations

import difflib
import functools
import inspect
import re
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from qsnn.errors import ConfigError
from qsnn.run.rules import RULES, UNCHECKED

ROOT = Path(__file__).resolve().parents[3]
CONFIG_DIRS = (ROOT / "conf", ROOT / "sweeps")  # sweeps/*.yaml are primary configs of study jobs
FREE = "extra"  # +extra.<anything>=...: free-form, documented in README.md
HYDRA_KEYS = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"}
INSTANCES = ("logger", "callbacks")  # named instances: a new one (+callbacks.mine._target_=...) is allowed
PACKAGE = re.compile(r"^#\s*@package\s+(\S+)", re.M)


def _package(path: Path, base: Path, text: str) -> str | None:
    """Where a config file's content lands (None: under hydra., not ours to check)."""
    group = ".".join(path.relative_to(base).parent.parts) if base.name == "conf" else ""
    m = PACKAGE.search(text)
    pkg = "" if m and m.group(1) == "_global_" else m.group(1).replace("_group_", group) if m else group
    return None if pkg.split(".")[0] == "hydra" else pkg


@functools.cache
def _scan() -> tuple[dict[str, set], dict[tuple[str, str], set], dict[str, set]]:
    """(keys declared at each path, keys of the nodes of each (path, target), the targets at each path)."""
    declared: dict[str, set] = {}
    own: dict[tuple[str, str], set] = {}
    targets: dict[str, set] = {}

    def walk(node: Any, path: str, skip: set) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item, path, set())
            return
        if not isinstance(node, dict):
            return
        keys = {str(k) for k in node} - skip - ({"hydra"} if not path else set())
        declared.setdefault(path, set()).update(keys)
        if isinstance(node.get("_target_"), str):
            own.setdefault((path, node["_target_"]), set()).update(keys)
            targets.setdefault(path, set()).add(node["_target_"])
        for k in keys:
            walk(node[k], f"{path}.{k}" if path else k, set())

    for base in CONFIG_DIRS:
        for f in sorted(base.rglob("*.yaml") if base.name == "conf" else base.glob("*.yaml")):  # not sweeps/wandb/
            text = f.read_text()
            pkg = _package(f, base, text)
            if pkg is not None:
                walk(yaml.safe_load(text) or {}, pkg, {"defaults"})  # a file's defaults list is no key
    return declared, own, targets


def conf_targets() -> dict[str, set]:
    """path -> the callables conf/ (and sweeps/) name there; ``set().union(*values)``: all of them."""
    return _scan()[2]


@functools.cache
def accepted_keys(target: str) -> tuple[frozenset, bool] | None:
    """(keyword arguments ``target`` takes, whether it takes any other too: ``**kwargs`` that lead
    nowhere inspectable); None when it cannot be imported or inspected (instantiating it will say)."""
    from hydra.utils import get_object

    try:
        obj = get_object(target)
        chain = [k.__init__ for k in obj.__mro__ if "__init__" in vars(k) and k is not object] \
            if inspect.isclass(obj) else [obj]
        names: set[str] = set()
        for fn in chain or [obj]:
            params = inspect.signature(fn).parameters.values()
            names |= {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)} - {"self"}
            if not any(p.kind is p.VAR_KEYWORD for p in params):
                return frozenset(names), False
        return frozenset(names), True
    except Exception:
        return None


@functools.cache
def trainer_defaults() -> dict[str, Any]:
    """Lightning's own default of every ``lightning.Trainer`` argument that conf/trainer/ lists (all
    but ``logger`` and ``callbacks``, which are the top-level logger=/callbacks= groups)."""
    import lightning

    return {n: p.default for n, p in inspect.signature(lightning.Trainer).parameters.items()
            if n not in ("logger", "callbacks")}


def is_trainer_default(arg: str, value: Any) -> bool:
    """True if ``trainer.<arg>=value`` is what Lightning does without the argument."""
    defaults = trainer_defaults()
    d = defaults.get(arg, inspect.Parameter.empty)
    return arg in defaults and value == d and isinstance(value, bool) == isinstance(d, bool)


def check_known_keys(cfg: DictConfig) -> None:
    """Raise ConfigError (one line) for the first key that no callable takes and conf/ never declares."""
    declared = _scan()[0]
    groups = {p.name for p in CONFIG_DIRS[0].iterdir() if p.is_dir()}
    root = declared.get("", set()) | groups | {k.split(".")[0] for k, _, _ in RULES} | UNCHECKED
    _check(cfg, "", root | {"hydra", FREE}, None)


def _allowed(node: DictConfig, path: str) -> tuple[set | None, str | None]:
    declared, own, _ = _scan()
    target = node._get_node("_target_")._value() if "_target_" in node else None
    if not isinstance(target, str) or "${" in target:
        return declared.get(path), None
    accepted = accepted_keys(target)
    if accepted is None or (accepted[1] and path.split(".")[0] == "logger"):  # loggers pass **kwargs on (wandb.init)
        return None, target
    return set(accepted[0]) | own.get((path, target), set()) | HYDRA_KEYS, target


def _check(node: DictConfig, path: str, allowed: set | None, target: str | None) -> None:
    for k in node.keys():
        k = str(k)
        key, child = f"{path}.{k}" if path else k, node._get_node(k)
        if not path and k in ("hydra", FREE):
            continue
        new_instance = path in INSTANCES and isinstance(child, DictConfig) and "_target_" in child
        if allowed is not None and k not in allowed and not new_instance:
            _unknown(node, key, k, allowed, path, target)
        if isinstance(child, DictConfig):
            child_allowed, child_target = _allowed(child, key)
            if child_allowed is not None or child_target is None:  # what a callable takes as **kwargs: not ours
                _check(child, key, child_allowed, child_target)


def _unknown(node: DictConfig, key: str, k: str, allowed: set, path: str, target: str | None) -> None:
    child = node._get_node(k)
    try:
        value = OmegaConf.to_container(child, resolve=True) if isinstance(child, DictConfig) else node[k]
    except Exception:
        value = child._value()
    names = sorted(a for a in allowed - HYDRA_KEYS if a not in ("hydra", FREE))
    near = difflib.get_close_matches(k, names, n=1, cutoff=0.6)
    prefix = f"{path}." if path else ""
    if not path:
        use = f"{near[0]} (or {FREE}.{k} for a free-form value)" if near else f"{FREE}.{k} for a free-form value"
        raise ConfigError(f"{key}={value!r} is not allowed: there is no top-level key {k}; use {use}")
    what = f"{target} takes no argument {k}" if target else f"{path} has no key {k}"
    use = prefix + near[0] if near else "one of " + ", ".join(prefix + n for n in names[:10]) + \
        (", ..." if len(names) > 10 else "")
    raise ConfigError(f"{key}={value!r} is not allowed: {what}; use {use}")

"""Check a composed config before anything is built: one clear line per problem.

Each message names the key, the value given and what is allowed: ``<key>=<value> is not allowed:
use <what is allowed>``. First every key must be known (``qsnn.run.known_keys``: a key added with
``+`` too). The rows are in ``qsnn.run.rules``; here they are applied, then the rules
that relate keys (``_cross_checks``: fractions that must leave a training set, a period given in
steps or in epochs, ...), then the model against the data: each data module declares the sample
shape a config gives it (``sample_shape``), so a conv net on 1-D data or on images too small for
its blocks is refused here too, without this module knowing any dataset's internals.
"""
from __future__ import annotations

import importlib.util
from typing import Any, Sequence

from omegaconf import DictConfig, ListConfig, OmegaConf

from qsnn.errors import ConfigError
from qsnn.run.known_keys import check_known_keys
from qsnn.run.rules import DERIVED, EVENTS, RULES, SECTIONS


def flatten(cfg: DictConfig) -> tuple[dict[str, Any], set[str]]:
    """{dotted key: resolved value} of the top-level leaves and every leaf of ``SECTIONS`` (lists as
    lists), and the set of keys that are interpolations. One walk: far cheaper than a select per rule."""
    values, interpolated = {}, set()

    def walk(node: DictConfig, prefix: str, deep: bool):
        for k in node.keys():
            key, child = f"{prefix}{k}", node._get_node(k)
            if isinstance(child, DictConfig):
                if deep or k in SECTIONS:
                    walk(child, key + ".", True)
                continue
            if child._is_interpolation():
                interpolated.add(key)
            try:
                v = node[k]
            except Exception:  # an interpolation that cannot resolve here (no rule reads it)
                continue
            values[key] = OmegaConf.to_container(v, resolve=True) if isinstance(v, ListConfig) else v
    walk(cfg, "", False)
    return values, interpolated


def _fail(key: str, value, allowed: str):
    raise ConfigError(f"{key}={value!r} is not allowed: use {allowed}")


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError (one line) for the first unknown key (``+key`` included), then for the first
    value that breaks a rule."""
    check_known_keys(cfg)
    values, interpolated = flatten(cfg)
    done = set()
    for key, rule, when in RULES:
        if key in done or key not in values:
            continue
        if when is not None and values.get(when[0]) != when[1]:
            continue
        done.add(key)
        if not rule.ok(values[key]):
            _fail(key, values[key], rule.allowed)
    for key, source in DERIVED.items():  # a resolved config (stacked jobs, a saved run) holds equal copies
        if key in values and key not in interpolated and values[key] != values.get(source):
            raise ConfigError(f"{key}={values[key]!r} is not allowed: it follows {source}; set {source} instead")
    _cross_checks(values)
    _check_model_input(values)
    _validate_logger_packages(cfg)


def _one_of(values: dict[str, Any], keys: Sequence[str]) -> None:
    """A schedule period given in steps, epochs or a fraction of the run: at least one set."""
    present = [k for k in keys if k in values]
    if present and all(values[k] is None for k in present):
        raise ConfigError(f"{', '.join(f'{k}=None' for k in present)}: set one of them")


def _cross_checks(values: dict[str, Any]) -> None:
    get = values.get
    val, test = get("data.val_fraction"), get("data.test_fraction")
    if val is not None and test is not None and not val + test < 1:
        raise ConfigError(f"data.val_fraction={val!r}, data.test_fraction={test!r} are not allowed: "
                          "their sum must be < 1 to leave a training set")
    start, end = get("loss.sparsity.start"), get("loss.sparsity.end")
    if start is not None and end is not None and not start <= end:
        raise ConfigError(f"loss.sparsity.start={start!r}, loss.sparsity.end={end!r} are not allowed: "
                          "need start <= end")
    for keys in (("sched.T_max", "sched.T_max_epochs", "sched.T_max_frac"),
                 ("sched.T_0", "sched.T_0_epochs", "sched.T_0_frac"), ("sched.step_size", "sched.step_epochs")):
        _one_of(values, keys)
    if get("optim.nesterov") and not (get("optim.momentum") or 0) > 0:
        raise ConfigError(f"optim.nesterov=True is not allowed with optim.momentum={get('optim.momentum')!r}: "
                          "Nesterov needs momentum > 0")
    max_epochs, min_epochs = get("trainer.max_epochs"), get("trainer.min_epochs")
    if max_epochs is not None and max_epochs != -1 and min_epochs is not None and min_epochs > max_epochs:
        raise ConfigError(f"trainer.min_epochs={min_epochs!r} is not allowed with trainer.max_epochs={max_epochs!r}: "
                          "need min_epochs <= max_epochs")
    sched = str(get("sched._target_") or "")
    frac = next((k for k in ("sched.T_max_frac", "sched.T_0_frac") if get(k) is not None), None)
    if max_epochs == -1 and frac:
        raise ConfigError(f"trainer.max_epochs=-1 is not allowed with {frac}={get(frac)!r}: a fraction of a run "
                          "that has no end; set max_epochs or give the period in steps or epochs")
    if max_epochs == -1 and sched.endswith((".cosine", ".onecycle")):
        raise ConfigError(f"trainer.max_epochs=-1 is not allowed with sched={sched.rsplit('.', 1)[1]}: it spans "
                          "the whole run, which has no end; set max_epochs or use a periodic/constant sched")
    if get("data._target_") == EVENTS[1] and get("data.time_window_us") is not None and not get("data.num_steps"):
        raise ConfigError("data.num_steps=None is not allowed with data.time_window_us: set the fixed number "
                          "of steps T (crop / zero-pad)")
    if get("data._target_") == EVENTS[1] and (get("data.time_window_us") is None) == (get("data.n_time_bins") is None):
        raise ConfigError(f"data.time_window_us={get('data.time_window_us')!r}, "
                          f"data.n_time_bins={get('data.n_time_bins')!r}: set exactly one of them")
    # snnTorch's mse_count_loss aims at int(T * correct_rate) spikes for the true class and int(T *
    # incorrect_rate) for the others (T = data.num_steps): equal targets separate no class (T=1: 0 and 0)
    c, i, steps = get("loss.correct_rate"), get("loss.incorrect_rate"), get("data.num_steps")
    if (str(get("loss._target_") or "").endswith("mse_count_loss") and not get("loss.population_code")
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (c, i, steps))
            and int(steps * c) == int(steps * i)):
        fix = next((f"data.num_steps >= {t} or " for t in range(int(steps) + 1, 100_001) if int(t * c) != int(t * i)),
                   "")
        raise ConfigError(f"loss.correct_rate={c!r}, loss.incorrect_rate={i!r} are not allowed with data.num_steps="
                          f"{steps!r}: mse_count_loss's target spike counts int({steps}*{c}) and int({steps}*{i}) "
                          f"are both {int(steps * c)}, so no gradient separates the classes; use {fix}rates further "
                          "apart")
    if get("model.neuron") == "sigma_delta" and get("surrogate.stability"):
        raise ConfigError("surrogate.stability=true is not allowed with model.neuron=sigma_delta: "
                          "it calibrates LIF neurons")


def input_shape(values: dict[str, Any]) -> tuple[int, ...] | None:
    """The shape of one sample the chosen data option gives the model, as its data module declares
    it (``sample_shape``); None when the module declares none."""
    from hydra.utils import get_class

    target = values.get("data._target_")
    try:
        cls = get_class(target) if target else None
    except Exception:  # not importable: instantiating it will say so
        return None
    data = {k.removeprefix("data."): v for k, v in values.items() if k.startswith("data.")}
    return cls.sample_shape(data) if hasattr(cls, "sample_shape") else None


def _check_model_input(values: dict[str, Any]) -> None:
    """The conv net wants images [C, H, W] large enough for its conv+pool blocks."""
    if not str(values.get("model._target_") or "").endswith(".csnn"):
        return
    shape = input_shape(values)
    if shape is None:
        return
    if len(shape) != 3:
        raise ConfigError(f"model=csnn is not allowed with this data: it needs images [C, H, W], the data gives "
                          f"{list(shape)}; use model=fcsnn")
    from qsnn.nn.models.csnn import conv_out_shape

    channels, k = values["model.channels"], values["model.kernel_size"]
    try:
        conv_out_shape(shape, channels, k)
    except ValueError:
        raise ConfigError(f"model.channels={channels!r}, model.kernel_size={k!r} are not allowed for input "
                          f"{list(shape)}: {len(channels)} conv{k}+pool2 blocks shrink it below 1x1; "
                          "use fewer channels entries or a smaller kernel_size") from None


# optional extras (pyproject [project.optional-dependencies]) that a logger option needs:
# logger class name -> (modules any of which will do, the extra that installs one)
LOGGER_EXTRAS = {"TensorBoardLogger": (("tensorboard", "tensorboardX"), "tensorboard")}


def _validate_logger_packages(cfg: DictConfig) -> None:
    for name, lg in (OmegaConf.select(cfg, "logger") or {}).items():
        target = str(lg.get("_target_", "")) if isinstance(lg, DictConfig) else ""
        needs = LOGGER_EXTRAS.get(target.rsplit(".", 1)[-1])
        if needs and not any(importlib.util.find_spec(m) is not None for m in needs[0]):
            raise ConfigError(f"logger={name} needs the {needs[0][0]} package, which is not installed: "
                              f"pip install 'qsnn[{needs[1]}]' (or use logger=wandb, csv or none)")

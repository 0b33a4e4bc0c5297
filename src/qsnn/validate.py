"""Check a composed config before anything is built: one clear line per problem.

Each message names the key, the value given and what is allowed.
"""
from __future__ import annotations

import importlib.util

from omegaconf import DictConfig, OmegaConf

ALLOWED_BITS = set(range(1, 9)) | {32}


class ConfigError(ValueError):
    pass


def _get(cfg: DictConfig, key: str):
    return OmegaConf.select(cfg, key, default=None, throw_on_missing=False)


def _number(cfg, key, kind=float):
    v = _get(cfg, key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (kind is int and not float(v).is_integer()):
        raise ConfigError(f"{key}={v!r} is not allowed: expected {'an integer' if kind is int else 'a number'}")
    return kind(v)


def validate(cfg: DictConfig) -> None:
    bits = _get(cfg, "quant.bits")
    if bits is not None and (isinstance(bits, bool) or not isinstance(bits, int) or bits not in ALLOWED_BITS):
        raise ConfigError(f"quant.bits={bits!r} is not allowed: use an integer in 1..8, or 32 for full precision")
    sbits = _get(cfg, "quant.state_bits")
    if sbits is not None and (isinstance(sbits, bool) or not isinstance(sbits, int) or not 1 <= sbits <= 16):
        raise ConfigError(f"quant.state_bits={sbits!r} is not allowed: use null or an integer in 1..16")
    lr = _number(cfg, "optim.lr")
    if lr is not None and not lr > 0:
        raise ConfigError(f"optim.lr={lr!r} is not allowed: the learning rate must be > 0")
    for key in ("data.num_steps", "data.batch_size"):
        v = _number(cfg, key, int)
        if v is not None and v < 1:
            raise ConfigError(f"{key}={v!r} is not allowed: must be an integer >= 1")
    beta = _number(cfg, "model.beta")
    if beta is not None and not 0.0 <= beta <= 1.0:
        raise ConfigError(f"model.beta={beta!r} is not allowed: the membrane decay must be in [0, 1]")
    thr = _number(cfg, "model.threshold")
    if thr is not None and not thr > 0:
        raise ConfigError(f"model.threshold={thr!r} is not allowed: must be > 0")
    reset = _get(cfg, "model.reset")
    if reset is not None and reset not in ("subtract", "zero", "none"):
        raise ConfigError(f"model.reset={reset!r} is not allowed: use subtract, zero or none")
    enc = _get(cfg, "data.encoding")
    if enc is not None and enc not in ("direct", "rate", "latency", "none"):
        raise ConfigError(f"data.encoding={enc!r} is not allowed: use direct, rate, latency or none")
    impl = _get(cfg, "model.impl")
    if impl is not None and impl not in ("fast", "snntorch"):
        raise ConfigError(f"model.impl={impl!r} is not allowed: use fast or snntorch")
    epochs = _number(cfg, "trainer.max_epochs", int)
    if epochs is not None and epochs < 1 and epochs != -1:
        raise ConfigError(f"trainer.max_epochs={epochs!r} is not allowed: must be >= 1 (or -1 for unlimited)")
    mb = _number(cfg, "cost.max_batches", int)
    if mb is not None and mb < 1:
        raise ConfigError(f"cost.max_batches={mb!r} is not allowed: use null (every test batch) or an integer >= 1")
    vs = _number(cfg, "data.val_size", int)
    if vs is not None and vs < 0:
        raise ConfigError(f"data.val_size={vs!r} is not allowed: use 0 (no validation set) or a positive integer")
    _validate_methods(cfg)
    _validate_logger_packages(cfg)
    _validate_sched_fractions(cfg)


def _validate_methods(cfg: DictConfig) -> None:
    """Options of the papers' methods: surrogate family, quantizer, neuron, sparsity."""
    from qsnn.quant.ste import STES
    from qsnn.surrogate.family import SHAPES

    method = _get(cfg, "quant.method")
    if method is not None and method not in ("uniform_ste", "sigmoid_sum"):
        raise ConfigError(f"quant.method={method!r} is not allowed: use uniform_ste (quant=uniform) "
                          "or sigmoid_sum (quant=sigmoid_sum)")
    if _get(cfg, "surrogate._target_") == "qsnn.surrogate.surrogate":
        shape = _get(cfg, "surrogate.shape")
        if shape not in SHAPES:
            raise ConfigError(f"surrogate.shape={shape!r} is not allowed: use one of {', '.join(SHAPES)}")
        for key in ("surrogate.gamma", "surrogate.beta"):
            v = _number(cfg, key)
            if v is not None and not v > 0:
                raise ConfigError(f"{key}={v!r} is not allowed: must be > 0")
        q = _number(cfg, "surrogate.q")
        if q is not None and not q > 1:
            raise ConfigError(f"surrogate.q={q!r} is not allowed: the tail fatness must be > 1")
    neuron = _get(cfg, "model.neuron")
    if neuron is not None and neuron not in ("leaky", "sigma_delta"):
        raise ConfigError(f"model.neuron={neuron!r} is not allowed: use leaky or sigma_delta")
    if neuron == "sigma_delta":
        act = _get(cfg, "model.sigma_delta.activation")
        if act not in ("relu", "clipped_relu"):
            raise ConfigError(f"model.sigma_delta.activation={act!r} is not allowed: use relu or clipped_relu")
        ste = _get(cfg, "model.sigma_delta.ste")
        if ste not in STES:
            raise ConfigError(f"model.sigma_delta.ste={ste!r} is not allowed: use one of {', '.join(STES)}")
        for key in ("model.sigma_delta.dt_start", "model.sigma_delta.dt_end"):
            v = _number(cfg, key)
            if v is None or not v > 0:
                raise ConfigError(f"{key}={v!r} is not allowed: must be > 0")
        if _get(cfg, "surrogate.stability"):
            raise ConfigError("surrogate.stability=true is not allowed with model.neuron=sigma_delta: "
                              "it calibrates LIF neurons")
    sp = _number(cfg, "loss.sparsity.weight")
    if sp is not None and sp < 0:
        raise ConfigError(f"loss.sparsity.weight={sp!r} is not allowed: must be >= 0 (0 = off)")


# optional extras (pyproject [project.optional-dependencies]) that a logger option needs:
# logger class name -> (modules any of which will do, the extra that installs one)
LOGGER_EXTRAS = {"TensorBoardLogger": (("tensorboard", "tensorboardX"), "tensorboard")}


def _validate_logger_packages(cfg: DictConfig) -> None:
    for name, lg in (_get(cfg, "logger") or {}).items():
        target = str(lg.get("_target_", "")) if isinstance(lg, DictConfig) else ""
        needs = LOGGER_EXTRAS.get(target.rsplit(".", 1)[-1])
        if needs and not any(importlib.util.find_spec(m) is not None for m in needs[0]):
            raise ConfigError(f"logger={name} needs the {needs[0][0]} package, which is not installed: "
                              f"pip install 'qsnn[{needs[1]}]' (or use logger=wandb, csv or none)")


def _validate_sched_fractions(cfg: DictConfig) -> None:
    """Schedule periods given as a fraction of the run's total steps (sched.*_frac)."""
    for key in ("sched.T_max_frac", "sched.T_0_frac"):
        v = _number(cfg, key)
        if v is not None and not 0.0 < v <= 1.0:
            raise ConfigError(f"{key}={v!r} is not allowed: a fraction of the run's total steps must be in (0, 1]")

"""The rule table of ``qsnn.run.validate``: one row per numeric, choice and flag key of conf/.

- ``RULES``: ``(key, rule, when)``. A key the chosen group options do not have is skipped; for a
  key with several rows the first row whose ``when`` holds applies (e.g. ``quant.bits`` is 1..8 for
  the sigmoid-sum quantizer, 1..8 or 32 otherwise). ``tests/test_validate.py`` checks that every
  leaf key of every option in conf/ has a row here or is listed in ``DERIVED``/``UNCHECKED`` (or, for a
  trainer key, ``CHECKED_BY_LIGHTNING``), so a new key cannot slip past.
- ``DERIVED``: keys that only mirror another key by interpolation (``quant.weight.bits:
  ${..bits}``); setting one to another value than its source would make the run disagree with itself.
- A ``Rule`` is a predicate and the "use ..." text of its error message. Values are compared
  strictly by type: ``data.batch_size=1.5``, ``seed=abc``, ``model.learn_beta=yes`` are refused
  rather than coerced.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

ALLOWED_BITS = set(range(1, 9)) | {32}
FLOAT32_MAX = 3.4028234663852886e38  # torch.finfo(torch.float32).max: larger numbers overflow in the optimizer
SEED_MAX = 2**32 - 1  # numpy's (and Lightning's) seed range; Lightning replaces others by a random seed


@dataclass(frozen=True)
class Rule:
    ok: Callable[[Any], bool]
    allowed: str  # "use ..." text of the error message


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _or_null(rule: Rule, null: bool) -> Rule:
    return Rule(lambda v: v is None or rule.ok(v), rule.allowed + " or null") if null else rule


def integer(lo: int | None = None, hi: int | None = None, null: bool = False, allowed: str | None = None) -> Rule:
    text = allowed or ("an integer" + (f" in {lo}..{hi}" if lo is not None and hi is not None
                                       else f" >= {lo}" if lo is not None else ""))
    return _or_null(Rule(lambda v: _is_int(v) and (lo is None or v >= lo) and (hi is None or v <= hi), text), null)


def number(lo: float | None = None, hi: float | None = None, lo_open: bool = False, hi_open: bool = False,
           null: bool = False, allowed: str | None = None) -> Rule:
    if lo is not None and hi is not None:
        text = f"a number in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    elif lo is not None:
        text = f"a number {'>' if lo_open else '>='} {lo:g}"
    else:
        text = "a finite number"

    def ok(v):
        return _is_num(v) and (lo is None or (v > lo if lo_open else v >= lo)) and \
            (hi is None or (v < hi if hi_open else v <= hi))
    return _or_null(Rule(ok, allowed or text), null)


def choice(*options, allowed: str | None = None) -> Rule:
    names = ["null" if o is None else str(o).lower() if isinstance(o, bool) else str(o) for o in options]
    text = " or ".join(names) if len(names) == 2 else "one of " + ", ".join(names)
    # bools compare equal to 0/1: match type as well as value
    return Rule(lambda v: any(v == o and type(v) is type(o) for o in options), allowed or text)


FLAG = choice(True, False)
TEXT = Rule(lambda v: isinstance(v, str) and v != "", "a non-empty string")
PATH = Rule(lambda v: isinstance(v, str) and v != "", "a directory path")
POSITIVE = number(0, lo_open=True)
FRACTION_OPEN = number(0, 1, lo_open=True, hi_open=True)
PROBABILITY = number(0, 1)


def int_list(lo: int = 1, length: int | None = None, allowed: str | None = None) -> Rule:
    def ok(v):
        return isinstance(v, list) and (length is None or len(v) == length) and all(_is_int(x) and x >= lo for x in v)
    n = f"{length} " if length else ""
    return Rule(ok, allowed or f"a list of {n}integers >= {lo}")


def num_list(lo: float, hi: float, length: int, hi_open: bool = True) -> Rule:
    item = number(lo, hi, hi_open=hi_open)
    return Rule(lambda v: isinstance(v, list) and len(v) == length and all(item.ok(x) for x in v),
                f"a list of {length} numbers in [{lo:g}, {hi:g}{')' if hi_open else ']'}")


# --- which group option is chosen: a rule's ``when`` ---------------------------------------------
EVENTS = ("data._target_", "qsnn.data.events.EventDataModule")
RANDMAN = ("data._target_", "qsnn.data.randman.RandmanDataModule")
SIGMOID_SUM = ("quant.method", "sigmoid_sum")
FAMILY = ("surrogate._target_", "qsnn.nn.surrogate.surrogate")

_SETS = ("nmnist", "dvsgesture", "cifar10dvs", "ncaltech101", "shd")  # qsnn.data.tonic_sets.SETS (tonic-free import)
_SHAPES = ("rectangular", "triangular", "exponential", "gaussian", "sigmoid_derivative", "fast_sigmoid",
           "q_pseudo_spike")  # qsnn.nn.surrogate.family.SHAPES
_STES = ("identity", "relu", "clipped_relu")  # qsnn.nn.quant.ste.STES
# what lightning.Trainer(precision=...) accepts (its type hint; tests/test_config.py compares)
TRAINER_PRECISIONS = (64, 32, 16, "64", "32", "16", "bf16", "64-true", "32-true", "16-true", "bf16-true", "16-mixed",
                      "bf16-mixed", "transformer-engine", "transformer-engine-float16", None)

RULES: list[tuple[str, Rule, tuple[str, str] | None]] = [
    # top level
    ("seed", integer(0, SEED_MAX, allowed=f"an integer in 0..{SEED_MAX} (it seeds weights, data split and "
                                          "batch order)"), None),
    ("torch_threads", integer(1, null=True), None),
    ("train", FLAG, None), ("test", FLAG, None), ("resume", FLAG, None), ("print_config", FLAG, None),
    ("trust_checkpoint", FLAG, None),
    ("compile", choice(True, False, "default", "reduce-overhead", "max-autotune"), None),
    ("cost.max_batches", integer(1, null=True, allowed="an integer >= 1 (test batches measured) or null (all)"),
     None),
    # data (every dataset)
    ("data.batch_size", integer(1), None),
    ("data.eval_batch_size", integer(1, null=True), None),
    ("data.num_steps", integer(1, null=True), EVENTS),  # null: T = n_time_bins
    ("data.num_steps", integer(1), None),
    ("data.encoding", choice("none", allowed="none (the samples are spike sequences already)"), EVENTS),
    ("data.encoding", choice("none", allowed="none (the samples are spike rasters already)"), RANDMAN),
    ("data.encoding", choice("direct", "rate", "latency"), None),
    ("data.val_fraction", FRACTION_OPEN, None),
    ("data.test_fraction", FRACTION_OPEN, None),
    ("data.val_size", integer(0, allowed="0 (no validation set) or a positive integer"), None),
    ("data.seed", integer(0, SEED_MAX), None),
    # randman
    ("data.classes", integer(2, allowed="an integer >= 2 (a task needs two classes)"), None),
    ("data.units", integer(1), None),
    ("data.dim", integer(1), None),
    ("data.alpha", number(1, allowed="a number >= 1 (smaller needs over 1000 terms per random function)"), None),
    ("data.samples_per_class", integer(1), None),
    ("data.manifold_seed", integer(0, SEED_MAX), None),
    # event datasets
    ("data.name", choice(*_SETS), EVENTS),
    ("data.name", TEXT, None),  # IDX: the folder name under data.root (MNIST, FashionMNIST)
    ("data.root", PATH, None),
    ("data.cache_dir", _or_null(PATH, True), None),
    ("data.download", FLAG, None), ("data.cache", FLAG, None), ("data.flat_root", FLAG, None),
    ("data.downsample", integer(1, allowed="an integer factor >= 1"), None),
    ("data.denoise_us", number(0, lo_open=True, null=True), None),
    ("data.time_window_us", number(0, lo_open=True, null=True), None),
    ("data.n_time_bins", integer(1, null=True), None),
    ("data.eval_steps", integer(1, null=True), None),
    ("data.num_workers", integer(0), None),
    ("data.sensor_size", int_list(1, 3, allowed="a list [W, H, P] of integers >= 1"), None),
    ("data.num_classes", integer(2, null=True), None),
    # model
    ("model.hidden", int_list(1, allowed="a list of layer sizes, each an integer >= 1 ([] for none)"), None),
    ("model.channels", int_list(1, allowed="a list of channel counts, each an integer >= 1"), None),
    ("model.kernel_size", integer(1), None),
    ("model.batchnorm", FLAG, None), ("model.bias", FLAG, None), ("model.fc_bias", FLAG, None),
    ("model.learn_beta", FLAG, None), ("model.learn_threshold", FLAG, None),
    ("model.beta", number(0, 1, allowed="a number in [0, 1] (the membrane decay)"), None),
    ("model.threshold", POSITIVE, None),
    ("model.reset", choice("subtract", "zero", "none"), None),
    ("model.dropout", number(0, 1, hi_open=True), None),
    ("model.impl", choice("fast", "snntorch"), None),
    ("model.neuron", choice("leaky", "sigma_delta"), None),
    ("model.sigma_delta.activation", choice("relu", "clipped_relu"), None),
    ("model.sigma_delta.ste", choice(*_STES), None),
    ("model.sigma_delta.dt_start", POSITIVE, None),
    ("model.sigma_delta.dt_end", POSITIVE, None),
    ("model.sigma_delta.anneal_end", number(0, 1, lo_open=True), None),
    # quant
    ("quant.method", choice("uniform_ste", "sigmoid_sum",
                            allowed="uniform_ste (quant=uniform) or sigmoid_sum (quant=sigmoid_sum)"), None),
    ("quant.bits", integer(1, 8, allowed="an integer in 1..8 (the sigmoid-sum quantizer has no full-precision "
                                         "mode: for 32 bits use quant=uniform)"), SIGMOID_SUM),
    ("quant.bits", Rule(lambda v: _is_int(v) and v in ALLOWED_BITS,
                        "an integer in 1..8, or 32 for full precision"), None),
    ("quant.per_channel", choice(False, allowed="false (per-channel scales exist for quant=uniform only)"),
     SIGMOID_SUM),
    ("quant.per_channel", FLAG, None),
    ("quant.keep_first_fp", FLAG, None), ("quant.keep_last_fp", FLAG, None), ("quant.narrow", FLAG, None),
    ("quant.state_bits", integer(1, 16, null=True), None),
    ("quant.t0", POSITIVE, None), ("quant.t_max", POSITIVE, None),
    ("quant.state.uniform", FLAG, None),
    # surrogate
    ("surrogate.shape", choice(*_SHAPES), FAMILY),
    ("surrogate.gamma", POSITIVE, FAMILY),
    ("surrogate.beta", POSITIVE, FAMILY),
    ("surrogate.q", number(1, lo_open=True, allowed="a number > 1 (the tail fatness)"), None),
    ("surrogate.stability", FLAG, None),
    ("surrogate.slope", POSITIVE, None),       # snntorch fast_sigmoid, sigmoid
    ("surrogate.alpha", POSITIVE, None),       # snntorch atan
    ("surrogate.threshold", POSITIVE, None),   # snntorch triangular
    # sched
    ("sched.warmup_steps", integer(0), None),
    ("sched.eta_min", number(0), None),
    ("sched.T_max", integer(1, null=True), None),
    ("sched.T_max_epochs", number(0, lo_open=True, null=True), None),
    ("sched.T_max_frac", number(0, 1, lo_open=True, null=True), None),
    ("sched.T_0", integer(1, null=True), None),
    ("sched.T_0_epochs", number(0, lo_open=True, null=True), None),
    ("sched.T_0_frac", number(0, 1, lo_open=True, null=True), None),
    ("sched.T_mult", integer(1), None),
    ("sched.step_size", integer(1, null=True), None),
    ("sched.step_epochs", number(0, lo_open=True, null=True), None),
    ("sched.gamma", POSITIVE, None),
    ("sched.pct_start", FRACTION_OPEN, None),
    ("sched.div_factor", POSITIVE, None),
    ("sched.final_div_factor", POSITIVE, None),
    # optim
    ("optim.lr", number(0, FLOAT32_MAX, lo_open=True, allowed="a number > 0 (the learning rate; at most 3.4e38, "
                                                              "float32)"), None),
    ("optim.betas", num_list(0, 1, 2), None),
    ("optim.weight_decay", number(0), None),
    ("optim.momentum", number(0, 1, hi_open=True), None),
    ("optim.nesterov", FLAG, None),
    # loss
    ("loss.correct_rate", PROBABILITY, None),
    ("loss.incorrect_rate", PROBABILITY, None),
    ("loss.sparsity.weight", number(0, allowed="a number >= 0 (0 = off)"), None),
    ("loss.sparsity.f_target", PROBABILITY, None),
    ("loss.sparsity.start", PROBABILITY, None),
    ("loss.sparsity.end", PROBABILITY, None),
    # trainer: every lightning.Trainer argument is a key of conf/trainer/cpu.yaml; the ones users set are
    # checked here, the rest (CHECKED_BY_LIGHTNING) by Lightning itself
    ("trainer.max_epochs", Rule(lambda v: _is_int(v) and (v >= 1 or v == -1),
                                "an integer >= 1, or -1 for no limit (to test a checkpoint without training: "
                                "src/eval.py ckpt_path=...)"),
     None),
    ("trainer.min_epochs", integer(0, null=True), None),
    ("trainer.check_val_every_n_epoch", integer(1, null=True), None),
    ("trainer.log_every_n_steps", integer(1), None),
    ("trainer.accumulate_grad_batches", integer(1), None),
    ("trainer.gradient_clip_val", number(0, null=True), None),
    *[(f"trainer.limit_{s}_batches", _or_null(Rule(lambda v: (_is_int(v) and v >= 0) or (_is_num(v) and 0 <= v <= 1),
                                                   "an integer >= 0 (batches) or a fraction in [0, 1]"), True), None)
      for s in ("train", "val", "test", "predict")],
    ("trainer.overfit_batches", Rule(lambda v: (_is_int(v) and v >= 0) or (_is_num(v) and 0 <= v <= 1),
                                     "an integer >= 0 (batches) or a fraction in [0, 1] (0: off)"), None),
    ("trainer.val_check_interval", _or_null(Rule(lambda v: (_is_int(v) and v >= 1) or (_is_num(v) and 0 < v <= 1)
                                                 or (isinstance(v, str) and v != ""),
                                                 "an integer >= 1 (batches), a fraction in (0, 1] of an epoch, "
                                                 "or a time \"DD:HH:MM:SS\""), True), None),
    ("trainer.precision", choice(*TRAINER_PRECISIONS, allowed="one of 64-true, 32-true, 16-mixed, bf16-mixed, 16-true, "
                                 "bf16-true, transformer-engine, transformer-engine-float16, 64, 32, 16, bf16 or null"),
     None),
    ("trainer.gradient_clip_algorithm", choice("norm", "value", None), None),
    ("trainer.max_steps", Rule(lambda v: _is_int(v) and (v >= 1 or v == -1), "an integer >= 1, or -1 for no limit"),
     None),
    ("trainer.min_steps", integer(0, null=True), None),
    ("trainer.num_sanity_val_steps", _or_null(Rule(lambda v: _is_int(v) and v >= -1,
                                                   "an integer >= 0, or -1 for the whole validation set"), True), None),
    ("trainer.fast_dev_run", Rule(lambda v: isinstance(v, bool) or (_is_int(v) and v >= 0),
                                  "true, false or an integer >= 0 (batches)"), None),
    ("trainer.deterministic", choice(True, False, "warn", None), None),
    *[(f"trainer.{k}", choice(True, False, None), None)
      for k in ("enable_checkpointing", "enable_progress_bar", "enable_model_summary", "benchmark")],
    *[(f"trainer.{k}", FLAG, None) for k in ("inference_mode", "use_distributed_sampler", "detect_anomaly", "barebones",
                                             "sync_batchnorm", "enable_autolog_hparams")],
    ("trainer.reload_dataloaders_every_n_epochs", integer(0), None),
    ("trainer.num_nodes", integer(1), None),
]

# key -> the key it mirrors; set that one instead
DERIVED = {
    "quant.weight.bits": "quant.bits", "quant.weight.per_channel": "quant.per_channel",
    "quant.weight.narrow": "quant.narrow", "quant.weight.t0": "quant.t0", "quant.weight.t_max": "quant.t_max",
    "quant.state.num_bits": "quant.state_bits", "quant.state.threshold": "model.threshold",
}
# leaf keys of train.yaml that take any string (or null): no rule
UNCHECKED = {"task_name", "ckpt_path", "optimized_metric"}
# trainer keys whose values Lightning checks itself (devices, strategies, profilers, plugins, paths, times)
CHECKED_BY_LIGHTNING = {f"trainer.{k}" for k in ("default_root_dir", "accelerator", "devices", "strategy", "plugins",
                                                 "profiler", "max_time", "model_registry")}


SECTIONS = ("data", "model", "quant", "surrogate", "sched", "optim", "loss", "trainer", "cost")

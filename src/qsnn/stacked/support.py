"""Which settings the stacked loop reproduces exactly, and a one-line reason when it does not.

The stacked loop (``qsnn.stacked.loop``) re-implements what a Lightning fit does for qsnn's own
callbacks and trainer options; anything outside that set runs job by job (``why_not_stacked``
names the first key that stops it)."""
from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from qsnn.run.known_keys import is_trainer_default

# Lightning callbacks the loop reproduces (per seed); anything else runs job by job
CALLBACKS = {
    "lightning.pytorch.callbacks.ModelCheckpoint", "qsnn.run.checkpoint_io.RunCheckpoint",
    "lightning.pytorch.callbacks.EarlyStopping",
    "lightning.pytorch.callbacks.LearningRateMonitor", "lightning.pytorch.callbacks.RichProgressBar",
    "lightning.pytorch.callbacks.TQDMProgressBar", "qsnn.run.callbacks.ProgressBar", "qsnn.run.callbacks.EpochTimer", "qsnn.run.callbacks.ClampWeights",
    "qsnn.run.guard.DivergenceGuard", "qsnn.run.resume.RNGState",
}
TRAINER_KEYS = {
    "_target_", "default_root_dir", "accelerator", "devices", "max_epochs", "min_epochs", "check_val_every_n_epoch",
    "log_every_n_steps", "deterministic", "enable_model_summary", "num_sanity_val_steps", "plugins", "precision",
    "limit_train_batches", "limit_val_batches", "limit_test_batches", "gradient_clip_val",
    "gradient_clip_algorithm", "enable_progress_bar", "benchmark", "num_nodes", "strategy",
}
# elementwise optimizers: their state and update for a stacked tensor are the per-seed ones side by side
OPTIMIZERS = {"torch.optim.Adam", "torch.optim.AdamW", "torch.optim.SGD", "torch.optim.RMSprop",
              "torch.optim.Adamax", "torch.optim.NAdam", "torch.optim.Adagrad"}
PRECISIONS = {"32": "float32", "32-true": "float32", "64": "float64", "64-true": "float64"}


def member_key(key: str) -> bool:
    """Overrides the members of one stacked group may differ in: ``seed`` and the optimizer's and LR
    schedule's hyperparameters (``optim.lr``, ``sched.T_0_frac``, ...: each member steps with its own
    optimizer and schedule, ``qsnn.stacked.optim``), but not which optimizer or schedule it is."""
    return key == "seed" or (key.startswith(("optim.", "sched.")) and not key.endswith("_target_"))


def select(cfg: DictConfig, key: str):
    """``cfg``'s value at the dotted ``key``, or None where it is absent."""
    return OmegaConf.select(cfg, key, default=None, throw_on_missing=False)


def why_not_stacked(cfg: DictConfig) -> str | None:
    """None if the seeds of ``cfg``'s setting can train as one stacked model, else the reason."""
    checks = [
        (not cfg.get("train", True), "train=false (nothing to train)"),
        (select(cfg, "model._target_") not in ("qsnn.nn.models.fcsnn.fcsnn", "qsnn.nn.models.csnn.csnn"),
         f"model {select(cfg, 'model._target_')} has no stacked form"),
        (select(cfg, "model.neuron") not in (None, "leaky"), f"model.neuron={select(cfg, 'model.neuron')} has no stacked form"),
        (select(cfg, "model.impl") not in (None, "fast"), "model.impl=snntorch is the reference per-step loop"),
        (select(cfg, "quant.state_bits") is not None, "quant.state_bits (state quantization) has no stacked form"),
        (bool(select(cfg, "surrogate.stability")), "surrogate.stability picks gamma/beta per seed from data"),
        (bool(select(cfg, "loss.sparsity.weight")), "loss.sparsity (firing-rate penalty) has no stacked form"),
        (select(cfg, "optim._target_") not in OPTIMIZERS, f"optimizer {select(cfg, 'optim._target_')} is not elementwise"),
        (bool(cfg.get("compile")), "compile=true"),
        (cfg.get("ckpt_path") not in (None, "last"), "ckpt_path (a single run's checkpoint)"),
        (select(cfg, "data.val_size") == 0 or select(cfg, "data.val_fraction") == 0,
         "no validation set (the stacked loop validates every epoch)"),
    ]
    for bad, why in checks:
        if bad:
            return why
    return _why_not_trainer(cfg) or _why_not_callbacks(cfg)


def _why_not_trainer(cfg: DictConfig) -> str | None:
    tr = cfg.trainer
    # conf/trainer/ lists every Lightning Trainer argument: one outside TRAINER_KEYS stops stacking only when set
    extra = sorted(k for k in set(tr) - TRAINER_KEYS if not is_trainer_default(k, tr.get(k)))
    if extra:
        return f"trainer.{extra[0]}={tr.get(extra[0])} is not handled by the stacked loop"
    if str(tr.get("precision") or "32-true") not in PRECISIONS:
        return f"trainer.precision={tr.precision} (stacked runs 32 or 64)"
    if tr.get("devices", 1) not in (1, "1", "auto") or tr.get("num_nodes", 1) != 1:
        return "trainer.devices/num_nodes: one device only"
    if tr.get("strategy", "auto") != "auto":
        return f"trainer.strategy={tr.strategy}"
    if tr.get("max_epochs") in (None, -1):
        return "trainer.max_epochs must be set (>= 1)"
    if tr.get("check_val_every_n_epoch", 1) != 1 or tr.get("num_sanity_val_steps", 0):
        return "check_val_every_n_epoch != 1 or num_sanity_val_steps > 0"
    return None


def _why_not_callbacks(cfg: DictConfig) -> str | None:
    for name, c in (cfg.get("callbacks") or {}).items():
        if c and "_target_" in c and c._target_ not in CALLBACKS:
            return f"callbacks.{name} ({c._target_}) is not handled by the stacked loop"
    es, ck = select(cfg, "callbacks.early_stopping"), select(cfg, "callbacks.model_checkpoint")
    if es and (es.get("stopping_threshold") is not None or es.get("divergence_threshold") is not None):
        return "callbacks.early_stopping thresholds are not handled by the stacked loop"
    if ck and (ck.get("save_top_k", 1) != 1 or ck.get("every_n_epochs", 1) != 1
               or ck.get("every_n_train_steps") or ck.get("train_time_interval")):
        return "callbacks.model_checkpoint: the stacked loop keeps the best checkpoint (save_top_k=1) and last"
    return None

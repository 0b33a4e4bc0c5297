"""Invalid values fail before training with one line naming key, value and what is allowed.

The rules are one table (qsnn.run.rules.RULES); ``test_every_key_has_a_rule`` keeps it complete:
every leaf key of every option in conf/ must have a row (or be a derived/free-text key).
"""
from __future__ import annotations

import pytest
from omegaconf import DictConfig

from conftest import CONF
from test_fuzz_config import assemble, load_option
from qsnn.errors import ConfigError
from qsnn.run.rules import CHECKED_BY_LIGHTNING, DERIVED, RULES, SECTIONS, UNCHECKED
from qsnn.run.validate import validate

CASES = [
    ("quant.bits=0", "quant.bits=0"), ("quant.bits=9", "quant.bits=9"), ("quant.bits=33", "quant.bits=33"),
    ("quant.bits=four", "quant.bits='four'"), ("optim.lr=0", "optim.lr=0"), ("optim.lr=-1", "optim.lr=-1"),
    ("data.num_steps=0", "data.num_steps=0"), ("data.batch_size=0", "data.batch_size=0"),
    ("model.beta=1.5", "model.beta=1.5"), ("model.threshold=0", "model.threshold=0"),
    ("data.encoding=morse", "data.encoding='morse'"), ("model.impl=cuda", "model.impl='cuda'"),
    # issue 17, item 4
    ("seed=abc", "seed='abc'"), ("data=randman data.classes=1", "data.classes=1"),
    ("quant=sigmoid_sum quant.bits=32", "quant.bits=32"), ("trainer.max_epochs=0", "src/eval.py ckpt_path="),
    ("optim.lr=1e39", "optim.lr=1e+39"),
    # issue 17, also found
    ("data.val_fraction=1.5", "data.val_fraction=1.5"), ("data.val_fraction=0", "data.val_fraction=0"),
    ("data.val_fraction=0.5 data.test_fraction=0.5", "sum must be < 1"),
    ("model.hidden=[0]", "model.hidden=[0]"), ("model.hidden=[64,-1]", "model.hidden=[64, -1]"),
    ("sched=cosine_periodic sched.T_max=0", "sched.T_max=0"),
    ("sched=cosine_periodic sched.T_max_epochs=null", "set one of them"),
    ("sched=cosine_restart sched.T_0=0", "sched.T_0=0"), ("sched=step sched.step_epochs=0", "sched.step_epochs=0"),
    ("surrogate.slope=0", "surrogate.slope=0"), ("surrogate.slope=-1", "surrogate.slope=-1"),
    ("surrogate.slope=nan", "surrogate.slope=nan"), ("surrogate=sigmoid surrogate.slope=0", "surrogate.slope=0"),
    ("surrogate=atan surrogate.alpha=0", "surrogate.alpha=0"),
    ("surrogate=triangular surrogate.threshold=-1", "surrogate.threshold=-1"),
    ("surrogate=sg_gaussian surrogate.gamma=0", "surrogate.gamma=0"),
    ("surrogate=sg_triangular surrogate.beta=-2", "surrogate.beta=-2"),
    ("surrogate=sg_q_pseudo_spike surrogate.q=1", "surrogate.q=1"),
    # wrong types, derived keys, cross-key rules
    ("data.batch_size=1.5", "data.batch_size=1.5"), ("model.learn_beta=yes", "model.learn_beta='yes'"),
    ("quant.weight.bits=3", "set quant.bits instead"), ("quant=sigmoid_sum quant.per_channel=true", "quant=uniform"),
    ("optim=sgd optim.momentum=0", "Nesterov needs momentum > 0"),
    ("trainer.min_epochs=5 trainer.max_epochs=2", "min_epochs <= max_epochs"),
    ("trainer.max_epochs=-1", "sched=cosine"), ("sched=cosine_restart sched.T_0_frac=1.5", "sched.T_0_frac=1.5"),
    ("sched=cosine_periodic sched.T_max_frac=0", "sched.T_max_frac=0"),
    ("trainer.max_epochs=-1 sched=cosine_periodic sched.T_max_frac=0.5", "a fraction of a run that has no end"), ("loss.sparsity.start=0.7", "start <= end"),
    ("data=randman data.encoding=rate", "data.encoding='rate'"), ("data=digits data.encoding=none", "direct"),
    ("model.neuron=sigma_delta surrogate=sg_gaussian surrogate.stability=true", "surrogate.stability"),
    ("data=randman model=csnn", "model=csnn is not allowed with this data"),
    ("data=shd model=csnn", "the data gives [700]"),
    ("model=csnn", "model.channels=[16, 64], model.kernel_size=5 are not allowed for input [1, 8, 8]"),
    # issue 22: every Lightning Trainer argument is a key; the ones users set have rules
    ("trainer.precision=8", "trainer.precision=8"), ("trainer.precision=float64", "64-true"),
    ("trainer.gradient_clip_algorithm=max", "one of norm, value, null"),
    ("trainer.gradient_clip_val=-1", "gradient_clip_val=-1"),
    ("trainer.limit_train_batches=1.5", "a fraction in [0, 1]"),
    ("trainer.accumulate_grad_batches=0", "an integer >= 1"),
    ("trainer.check_val_every_n_epoch=0", "trainer.check_val_every_n_epoch=0"), ("trainer.max_steps=0", "or -1"),
    # issue 24 item 5: a key added with + is checked like any other: the callable's arguments, conf/'s keys
    ("+optim.lrr=0.1", "optim.lrr=0.1 is not allowed: torch.optim.Adam takes no argument lrr; use optim.lr"),
    ("optim=sgd +optim.betas=[0.9,0.99]", "torch.optim.SGD takes no argument betas"),
    ("+model.treshold=2", "use model.threshold"), ("+data.batchsize=8", "use data.batch_size"),
    ("+quant.bitz=3", "quant has no key bitz; use quant.bits"), ("+loss.sparsity.wieght=1", "use loss.sparsity.weight"),
    ("+callbacks.model_checkpont.save_top_k=2", "callbacks has no key model_checkpont; use callbacks.model_checkpoint"),
    ("+trainer.limit_train_batchs=2", "use trainer.limit_train_batches"), ("+paths.out=x", "paths has no key out"),
    ("+sed=3", "there is no top-level key sed; use seed"), ("+foo=bar", "use extra.foo for a free-form value"),
]


@pytest.mark.parametrize("overrides,needle", CASES)
def test_bad_value_one_line_error(make_cfg, overrides, needle):
    with pytest.raises(ConfigError) as e:
        validate(make_cfg(*overrides.split()))
    msg = str(e.value)
    assert needle in msg and "\n" not in msg and ("allowed" in msg or "must" in msg or "set" in msg), msg


@pytest.mark.parametrize("override", ["quant.bits=1", "quant.bits=8", "quant.bits=32", "model.beta=0", "model.beta=1",
                                      "trainer.max_epochs=-1 sched=constant", "optim.lr=1e9", "model.hidden=[]",
                                      "model=csnn model.channels=[4] model.kernel_size=3",
                                      "data=dvsgesture model=csnn", "trainer.precision=64",
                                      "trainer.precision=bf16-mixed", "trainer.limit_train_batches=0.5",
                                      "trainer.gradient_clip_algorithm=value", "trainer.val_check_interval=0.5",
                                      "+extra.note=hello", "+callbacks.epoch_timer.verbose=false",
                                      "optim=sgd +optim.foreach=true", "+callbacks.mine._target_=builtins.dict"])
def test_edge_values_pass(make_cfg, override):
    validate(make_cfg(*override.split()))


def test_a_plus_key_the_class_takes_still_works(make_cfg):
    from qsnn.run.build import build_datamodule

    cfg = make_cfg("+data.eval_batch_size=64")  # digits.yaml lacks it, DigitsDataModule takes it
    validate(cfg)
    assert build_datamodule(cfg).eval_batch_size == 64


@pytest.mark.parametrize("override,line", [
    ("+optim.lrr=0.1", "optim.lrr=0.1 is not allowed: torch.optim.Adam takes no argument lrr; use optim.lr"),
    ("+foo=bar", "foo='bar' is not allowed: there is no top-level key foo; use extra.foo for a free-form value")])
def test_cli_unknown_plus_key_is_one_error_line(run, override, line):
    """Issue 24: +optim.lrr died with Adam's TypeError and a traceback; +foo was stored silently."""
    r = run("train.py", override, "print_config=false")
    assert r.returncode == 1 and "Traceback" not in r.stderr + r.stdout, r.stderr[-2000:]
    assert [ln for ln in r.stderr.splitlines() if ln.startswith("error:")] == [f"error: ConfigError: {line}"]


def leaves(node: DictConfig, prefix: str = "") -> list[str]:
    out = []
    for k in node.keys():
        child = node._get_node(k)
        if isinstance(child, DictConfig):
            out += leaves(child, f"{prefix}{k}.")
        elif not str(k).startswith("_"):
            out.append(f"{prefix}{k}")
    return out


def test_every_key_has_a_rule(make_cfg):
    """Every leaf key of every option of the validated groups (and of train.yaml) has a row in
    RULES, is a derived key or a free-text key; and each option's defaults pass validation."""
    ruled = {k for k, _, _ in RULES} | set(DERIVED) | UNCHECKED
    missing = set()
    default = make_cfg()  # one Hydra compose; each option file is swapped in as Hydra would (test_fuzz_config)
    for group in SECTIONS:
        for option in sorted(p.stem for p in (CONF / group).glob("*.yaml")):
            choice = {group: option, **({"data": "mnist"} if option == "csnn" else {})}  # csnn is a 28x28 net
            cfg = assemble(default, {g: {o: load_option(g, o)} for g, o in choice.items()}, choice)
            validate(cfg)
            missing |= {f"{group}.{k}" for k in leaves(cfg[group])} - ruled
            missing |= {k for k in cfg.keys() if not isinstance(cfg._get_node(k), DictConfig)} - ruled
    # every Lightning Trainer argument is a key of conf/trainer/cpu.yaml: a rule, or Lightning checks it
    assert not missing - CHECKED_BY_LIGHTNING, \
        f"keys without a rule in qsnn.run.rules.RULES: {sorted(missing - CHECKED_BY_LIGHTNING)}"


def test_cli_errors_before_training(run):
    # two processes (a few s each): Hydra's own message, and our one-line error; every other rule of
    # qsnn.run.validate and the data files' errors are checked in-process (here and in test_bad_inputs.py)
    r = run("train.py", "sched=cosine_restrat", "print_config=false")
    assert r.returncode != 0 and "cosine_restrat" in r.stderr and "cosine_restart" in r.stderr
    r = run("train.py", "seed=abc", "print_config=false")  # issue 17: was Hydra's multi-line "Error executing job"
    assert r.returncode == 1 and r.stderr.strip().splitlines()[-1] == (
        "error: ConfigError: seed='abc' is not allowed: use an integer in 0..4294967295 "
        "(it seeds weights, data split and batch order)")

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
from qsnn.run.rules import DERIVED, RULES, SECTIONS, UNCHECKED
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
                                      "data=dvsgesture model=csnn"])
def test_edge_values_pass(make_cfg, override):
    validate(make_cfg(*override.split()))


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
    allowed_free = {"trainer.default_root_dir", "trainer.accelerator", "trainer.devices", "trainer.deterministic",
                    "trainer.enable_model_summary", "trainer.num_sanity_val_steps", "trainer.strategy",
                    "trainer.precision", "trainer.sync_batchnorm", "trainer.use_distributed_sampler",
                    "trainer.profiler", "trainer.overfit_batches", "trainer.fast_dev_run",
                    "trainer.enable_progress_bar", "trainer.num_nodes", "trainer.plugins"}
    assert not missing - allowed_free, f"keys without a rule in qsnn.run.rules.RULES: {sorted(missing - allowed_free)}"


def test_cli_errors_before_training(run):
    # two processes (a few s each): Hydra's own message, and our one-line error; every other rule of
    # qsnn.run.validate and the data files' errors are checked in-process (here and in test_bad_inputs.py)
    r = run("train.py", "sched=cosine_restrat", "print_config=false")
    assert r.returncode != 0 and "cosine_restrat" in r.stderr and "cosine_restart" in r.stderr
    r = run("train.py", "seed=abc", "print_config=false")  # issue 17: was Hydra's multi-line "Error executing job"
    assert r.returncode == 1 and r.stderr.strip().splitlines()[-1] == (
        "error: ConfigError: seed='abc' is not allowed: use an integer in 0..4294967295 "
        "(it seeds weights, data split and batch order)")

"""Invalid values fail before training with one line naming key, value and what is allowed."""
from __future__ import annotations

import pytest

from qsnn.validate import ConfigError, validate

CASES = [
    ("quant.bits=0", "quant.bits=0"), ("quant.bits=9", "quant.bits=9"), ("quant.bits=33", "quant.bits=33"),
    ("quant.bits=four", "quant.bits='four'"), ("optim.lr=0", "optim.lr=0"), ("optim.lr=-1", "optim.lr=-1"),
    ("data.num_steps=0", "data.num_steps=0"), ("data.batch_size=0", "data.batch_size=0"),
    ("model.beta=1.5", "model.beta=1.5"), ("model.threshold=0", "model.threshold=0"),
    ("data.encoding=morse", "data.encoding='morse'"), ("model.impl=cuda", "model.impl='cuda'"),
]


@pytest.mark.parametrize("override,needle", CASES)
def test_bad_value_one_line_error(make_cfg, override, needle):
    with pytest.raises(ConfigError) as e:
        validate(make_cfg(override))
    msg = str(e.value)
    assert needle in msg and "\n" not in msg and ("allowed" in msg or "must" in msg)


@pytest.mark.parametrize("override", ["quant.bits=1", "quant.bits=8", "quant.bits=32", "model.beta=0", "model.beta=1"])
def test_edge_values_pass(make_cfg, override):
    validate(make_cfg(override))


def test_cli_errors_before_training(run):
    r = run("train.py", "quant.bits=9", "print_config=false")
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1].startswith("error: ConfigError: quant.bits=9 is not allowed")
    r = run("train.py", "sched=cosine_restrat", "print_config=false")
    assert r.returncode != 0 and "cosine_restrat" in r.stderr and "cosine_restart" in r.stderr
    r = run("train.py", "data=mnist", "data.root=/no/such/dir", "print_config=false")
    assert r.returncode == 1 and "data.root='/no/such/dir'" in r.stderr and "train-images-idx3-ubyte" in r.stderr

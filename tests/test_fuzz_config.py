"""Property-based fuzz of the configuration (hypothesis): random group choices from the real conf/
and random values for their keys (in range, out of range, wrong type). Each example must either
pass validation and then build its data module and model and run one training step, or stop
with ONE user error (ConfigError / DataFileError) of one line naming a key -- never any other
exception.

Speed: a Hydra compose costs ~0.5 s of CPU, so Hydra composes the default config once and each
option file is read with OmegaConf (``load_option``); an example is the default config with
those group nodes swapped in and its values set with OmegaConf, which is what Hydra's
composition of ``group=option key=value`` yields for these groups (each option writes only its
own package; ``test_assembled_equals_hydra_compose`` checks this on two combinations). A real
Lightning step costs ~0.5 s, so only about one accepted example in four runs the build + step
(hypothesis draws which); every example is validated. File-based datasets point at an empty
root and must give their one-line missing-files error. ``data.download`` is not fuzzed (true
would reach for the network).

Every distinct error message is printed at the end (``pytest -s``) and written to
``<basetemp>/fuzz_messages.txt``.
"""
from __future__ import annotations

import logging
import re
import time
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from conftest import CONF, compose_cfg
from qsnn.errors import ConfigError, DataFileError
from qsnn.run.validate import validate

GROUPS = ["data", "model", "quant", "surrogate", "sched", "optim", "loss"]
OPTIONS = {g: sorted(p.stem for p in (CONF / g).glob("*.yaml")) for g in GROUPS}
IN_MEMORY = {"digits", "randman", "randman_hard"}
N_EXAMPLES = int(__import__("os").environ.get("FUZZ_N", 300))
NOT_FUZZED = {"data.download"}  # true would make tonic download (no network here)
WRONG_TYPE = ["abc", 0.5, -1, None, [1], True, 1.0e9, 0, -0.5, 1.5]
USER_ERRORS = (ConfigError, DataFileError)
# a small, fast job (set where the chosen option has the key); the fuzz may override any of them
BASE = ["logger=none", "callbacks=none", "print_config=false", "torch_threads=1"]
SMALL = {"data": {"batch_size": 8, "num_steps": 3, "samples_per_class": 20},
         "model": {"hidden": [16], "channels": [4], "kernel_size": 3}}

MESSAGES: dict[str, int] = {}
COUNTS = {"examples": 0, "accepted": 0, "stepped": 0, "user_error": 0}


@pytest.fixture(scope="module")
def option_cfgs(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    empty = root / "no_data"
    empty.mkdir()
    base = [*BASE, f"paths.data_dir={empty}", f"paths.output_dir={root / 'out'}", f"paths.log_dir={root / 'logs'}"]
    default = compose_cfg(base)
    with open_dict(default):
        del default.hydra
    nodes = {g: {o: load_option(g, o) for o in OPTIONS[g]} for g in GROUPS}
    for g, small in SMALL.items():
        for node in nodes[g].values():
            for k, v in small.items():
                if k in node:
                    node[k] = v
    return default, nodes, base, root


def load_option(group: str, option: str) -> DictConfig:
    """One option file as Hydra composes it into its group: its in-group ``defaults`` merged in
    order (randman_hard: randman, then _self_). No option of these groups has any other defaults
    or a @package line; ``test_assembled_equals_hydra_compose`` checks the result."""
    node = OmegaConf.load(CONF / group / f"{option}.yaml")
    if "defaults" not in node:
        return node
    own = OmegaConf.create({k: v for k, v in node.items_ex(resolve=False) if k != "defaults"})
    parts = [own if d == "_self_" else load_option(group, d) for d in node.defaults]
    return OmegaConf.merge(*parts)


def assemble(default: DictConfig, nodes, choice: dict[str, str]) -> DictConfig:
    cfg = default.copy()
    with open_dict(cfg):
        for g, o in choice.items():
            cfg[g] = nodes[g][o].copy()
    return cfg


def leaf_keys(cfg: DictConfig, groups=GROUPS) -> list[str]:
    out = []

    def walk(node, prefix):
        for k in node.keys():
            path = f"{prefix}.{k}"
            child = node._get_node(k)
            if isinstance(child, DictConfig):
                walk(child, path)
            elif not str(k).startswith("_"):
                out.append(path)
    for g in groups:
        walk(cfg[g], g)
    return [k for k in out if k not in NOT_FUZZED]


def plausible(default) -> list:
    """Values near a key's default, of its type (mostly in range)."""
    if isinstance(default, bool):
        return [default, not default]
    if isinstance(default, int):
        return [default, default + 1, max(default // 2, 1), min(default * 2, 64)]
    if isinstance(default, float):
        return [default, default * 0.5, default * 2]
    if isinstance(default, (list, ListConfig)):
        return [list(default), list(default)[:1], []]
    return [default]


@st.composite
def examples(draw, keys_of):
    # in-memory data twice as often: only those examples can build and step
    choice = {g: draw(st.sampled_from(OPTIONS[g] + sorted(IN_MEMORY) if g == "data" else OPTIONS[g]))
              for g in GROUPS}
    keys = keys_of(choice)
    picked = draw(st.lists(st.sampled_from(list(keys)), max_size=3, unique=True)) if keys else []
    values = {}
    for k in picked:
        near = st.sampled_from(plausible(keys[k]))
        values[k] = draw(st.one_of(near, near, st.sampled_from(WRONG_TYPE)))  # 2:1 near the default
    step = draw(st.sampled_from([True, False, False, False]))
    return choice, values, step


def one_step(cfg: DictConfig) -> None:
    """Build the data module and module as the runner does and run one training batch."""
    import lightning as L

    from qsnn.run.build import build_datamodule, build_module

    dm = build_datamodule(cfg)
    dm.prepare_data()
    module = build_module(cfg, dm)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no per-example banner
    trainer = L.Trainer(fast_dev_run=1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, max_epochs=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, datamodule=dm)
    assert trainer.global_step == 1


def record(msg: str, root) -> None:
    # tmp paths differ per run: keep the message's shape
    key = re.sub(r"'?" + re.escape(str(root)) + r"[^\s',;)]*'?", "<tmp>", msg)
    MESSAGES[key] = MESSAGES.get(key, 0) + 1


def named_keys(cfg: DictConfig) -> set[str]:
    keys = set(leaf_keys(cfg)) | {"data.download"} | set(GROUPS)
    keys |= {k for k in cfg.keys() if not isinstance(cfg._get_node(k), DictConfig)}
    return keys


def check_example(cfg: DictConfig, step: bool, root) -> None:
    COUNTS["examples"] += 1
    try:
        validate(cfg)
        name = OmegaConf.select(cfg, "data._target_")
        in_memory = not name.endswith(("IDXDataModule", "EventDataModule"))
        if step or not in_memory:  # file-based data: building the data module must name the missing files
            one_step(cfg)
            COUNTS["stepped"] += 1
            assert in_memory, "file-based data with an empty data.root must be refused"
        COUNTS["accepted"] += 1
    except USER_ERRORS as e:
        msg = str(e)
        assert "\n" not in msg, msg
        named = {k for k in re.findall(r"([A-Za-z_][\w.]*)=", msg)}
        assert named & named_keys(cfg), f"the error names no key: {msg}"
        COUNTS["user_error"] += 1
        record(f"{type(e).__name__}: {msg}", root)


def test_fuzz_config(option_cfgs, capsys):
    default, nodes, _, root = option_cfgs
    key_cache: dict[tuple, dict] = {}

    def keys_of(choice):
        sig = tuple(sorted(choice.items()))
        if sig not in key_cache:
            cfg = assemble(default, nodes, choice)
            key_cache[sig] = {k: OmegaConf.select(cfg, k) for k in leaf_keys(cfg)}
        return key_cache[sig]

    @settings(max_examples=N_EXAMPLES, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(examples(keys_of))
    def fuzz(example):
        choice, values, step = example
        cfg = assemble(default, nodes, choice)
        for k, v in values.items():
            OmegaConf.update(cfg, k, v, merge=False)
        check_example(cfg, step, root)

    t0 = time.perf_counter()
    fuzz()
    wall = time.perf_counter() - t0
    report = [f"fuzz: {COUNTS['examples']} examples in {wall:.1f} s: {COUNTS['accepted']} accepted "
              f"({COUNTS['stepped']} built and stepped), {COUNTS['user_error']} one-line user errors, "
              f"{len(MESSAGES)} distinct messages:"]
    report += [f"  [{n}x] {m}" for m, n in sorted(MESSAGES.items())]
    (root / "fuzz_messages.txt").write_text("\n".join(report) + "\n")
    with capsys.disabled():
        print("\n" + "\n".join(report))
    assert COUNTS["stepped"] >= 10 and COUNTS["user_error"] >= 50  # both outcomes well exercised


def test_assembled_equals_hydra_compose(option_cfgs):
    """The fuzz's shortcut is Hydra's composition for these groups (a sample of combinations)."""
    default, nodes, base, _ = option_cfgs
    for choice in ({"data": "randman_hard", "model": "csnn", "quant": "sigmoid_sum", "surrogate": "sg_q_pseudo_spike",
                    "sched": "cosine_restart", "optim": "sgd", "loss": "ce_rate"},
                   {"data": "dvsgesture", "model": "fcsnn", "quant": "uniform", "surrogate": "atan",
                    "sched": "onecycle", "optim": "adamw", "loss": "mse_count"}):
        composed = compose_cfg([*base, *(f"{g}={o}" for g, o in choice.items()),
                                *(f"{g}.{k}={v}".replace(" ", "") for g, small in SMALL.items()
                                  for k, v in small.items() if k in nodes[g][choice[g]])])
        with open_dict(composed):
            del composed.hydra
        assert OmegaConf.to_yaml(assemble(default, nodes, choice)) == OmegaConf.to_yaml(composed)

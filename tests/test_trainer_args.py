"""Every Lightning Trainer argument is a key of conf/trainer/cpu.yaml (issue 22): it is set as
``trainer.<arg>=value`` without ``+``, the common ones run, a key at Lightning's default does not stop
stacking, and a run dir saved before the keys existed still resumes."""
from __future__ import annotations

import inspect
import typing

import lightning
import pytest
import torch
import yaml

from conftest import TINY
from qsnn.errors import ResumeRefused
from qsnn.run.rules import TRAINER_PRECISIONS
from qsnn.run.runner import train
from test_bad_inputs import job_cfg

ARGS = {n: p for n, p in inspect.signature(lightning.Trainer).parameters.items() if n not in ("logger", "callbacks")}


def hydra_value(v) -> str:
    return "null" if v is None else str(v).lower() if isinstance(v, bool) else str(v)


def test_every_trainer_argument_is_a_key_without_plus(make_cfg):
    # one compose: an argument missing from conf/trainer/cpu.yaml is Hydra's "Key ... is not in struct"
    cfg = make_cfg(*[f"trainer.{n}={hydra_value(p.default)}" for n, p in ARGS.items()])
    assert {n: cfg.trainer[n] for n in ARGS} == {n: p.default for n, p in ARGS.items()}
    assert "logger" not in cfg.trainer and "callbacks" not in cfg.trainer  # the top-level groups


def literals(hint) -> set:
    """The values of the Literal types in a type hint (``Union[Literal[...], ..., None]``)."""
    if typing.get_origin(hint) is typing.Literal:
        return set(typing.get_args(hint))
    return set().union(*(literals(a) for a in typing.get_args(hint)))


def test_precision_rule_lists_what_lightning_accepts():
    assert literals(ARGS["precision"].annotation) | {None} == set(TRAINER_PRECISIONS)


def test_common_trainer_arguments_run(tmp_path):
    out = tmp_path / "run"
    summary = train(job_cfg(out, *TINY, "logger=csv", "torch_threads=1", "trainer.max_epochs=2",
                            "trainer.precision=64", "trainer.limit_train_batches=2",
                            "trainer.accumulate_grad_batches=2",
                            "trainer.gradient_clip_val=1", "trainer.gradient_clip_algorithm=value",
                            "trainer.check_val_every_n_epoch=1"))
    assert summary["status"] == "ok", summary.get("error")
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 2  # 2 epochs of 2 batches, one optimizer step per 2 batches
    assert {v.dtype for k, v in ckpt["state_dict"].items() if k.endswith("weight.original")} == {torch.float64}
    assert summary["metrics"]["cost/synops"] > 0  # the cost pass feeds the float64 net float64 inputs
    saved = yaml.safe_load((out / "config_resolved.yaml").read_text())["trainer"]
    assert saved["precision"] == 64 and saved["gradient_clip_algorithm"] == "value" and saved["max_steps"] == -1


def test_a_trainer_argument_stops_stacking_only_when_set(tmp_path):
    from qsnn.stacked.support import why_not_stacked
    from test_stacked import job_cfg as stacked_cfg

    assert why_not_stacked(stacked_cfg(["trainer.accumulate_grad_batches=1", "trainer.max_steps=-1"], tmp_path)) is None
    assert why_not_stacked(stacked_cfg(["trainer.accumulate_grad_batches=2"], tmp_path)) == \
        "trainer.accumulate_grad_batches=2 is not handled by the stacked loop"


def test_a_run_saved_before_the_trainer_keys_existed_resumes(tmp_path):
    out = tmp_path / "run"
    fast = [*TINY, "logger=csv", "torch_threads=1"]
    assert train(job_cfg(out, *fast))["status"] == "ok"
    # the run dir as an older qsnn wrote it: only the trainer keys conf/trainer/cpu.yaml and TINY set then
    path = out / "config_resolved.yaml"
    saved = yaml.safe_load(path.read_text())
    before = {"_target_", "default_root_dir", "accelerator", "devices", "max_epochs", "min_epochs", "plugins",
              "check_val_every_n_epoch", "log_every_n_steps", "deterministic", "enable_model_summary",
              "num_sanity_val_steps", "limit_train_batches", "limit_val_batches", "limit_test_batches"}
    saved["trainer"] = {k: v for k, v in saved["trainer"].items() if k in before}
    del saved["compile"]  # added to conf/train.yaml later too (the code used false without it)
    path.write_text(yaml.safe_dump(saved))
    with pytest.raises(ResumeRefused, match=r"trainer\.precision: \(absent\) -> 64"):  # a value Lightning's is not
        train(job_cfg(out, *fast, "trainer.max_epochs=2", "resume=true", "trainer.precision=64"))
    with pytest.raises(ResumeRefused, match=r"compile: \(absent\) -> True"):  # not what the code used
        train(job_cfg(out, *fast, "trainer.max_epochs=2", "resume=true", "compile=true"))
    summary = train(job_cfg(out, *fast, "trainer.max_epochs=2", "resume=true"))
    assert summary["status"] == "ok" and summary["resumed_from"].endswith("last.ckpt") and len(summary["epochs"]) == 2

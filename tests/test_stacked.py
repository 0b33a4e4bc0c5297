"""launcher=stacked: the seeds of one setting trained as one stacked model equal each seed trained
alone through the normal runner (float64: weights, metrics, per-epoch history, LR, checkpoints),
a seed that diverges fails alone, and the sweep report is the one joblib's jobs give."""
from __future__ import annotations

import json
import math

import pytest
import torch
from omegaconf import open_dict

from conftest import compose_cfg, run_script
from qsnn.runner import hydra_info, train
from qsnn.stacked.group import train_group
from qsnn.stacked.support import why_not_stacked

BASE = ["trainer.max_epochs=2", "+trainer.limit_train_batches=3", "+trainer.limit_val_batches=2",
        "+trainer.limit_test_batches=1", "print_config=false", "callbacks.progress_bar=null", "logger=csv",
        "+trainer.precision=64", "torch_threads=1", "trainer.log_every_n_steps=4"]
CSNN = ["model=csnn", "model.channels=[3]", "model.kernel_size=3", "model.batchnorm=true", "data.batch_size=16"]
# every snnTorch surrogate in conf/surrogate/ and one sg_* shape, across fcsnn/csnn, both quantizers,
# BatchNorm, dropout, learned beta/threshold, per-channel scales, gradient clipping
CASES = {
    "fc-uniform-fast_sigmoid-dropout": ["surrogate=fast_sigmoid", "model.dropout=0.3", "model.learn_beta=true"],
    "fc-sigmoid_sum-atan": ["quant=sigmoid_sum", "surrogate=atan", "model.learn_threshold=true"],
    "fc-uniform-straight_through": ["surrogate=straight_through", "quant.bits=2", "model.reset=zero"],
    "csnn-uniform-sigmoid-bn": [*CSNN, "surrogate=sigmoid", "quant.per_channel=true", "model.dropout=0.2"],
    "csnn-sigmoid_sum-triangular-bn": [*CSNN, "quant=sigmoid_sum", "surrogate=triangular",
                                       "+trainer.gradient_clip_val=0.05"],
    "fc-sg_gaussian-fp32weights": ["surrogate=sg_gaussian", "quant.bits=32", "sched=cosine_restart"],
}
SEEDS = (3, 7)
INFO = {"overrides": [], "choices": {}, "job_num": None}


def job_cfg(overrides, out_dir, infos: list | None = None):
    cfg = compose_cfg(overrides, output_dir=out_dir)
    if infos is not None:
        infos.append(hydra_info())  # what the launcher hands over: the job's overrides and choices
    with open_dict(cfg):
        cfg.paths.output_dir = str(out_dir)
        del cfg.hydra
    return cfg


def same_summary(a, b, what):
    """Everything a single run's summary.json holds, equal, but timings and the output dir."""
    assert set(a) == set(b), f"{what}: {set(a) ^ set(b)}"
    for k in set(a) - {"epochs", "lr", "metrics", "output_dir", "startup_s", "fit_s", "wall_s"}:
        assert a[k] == b[k], f"{what} {k}"
    close(a["metrics"], b["metrics"], f"{what} metrics")
    assert len(a["epochs"]) == len(b["epochs"])
    for ea, eb in zip(a["epochs"], b["epochs"]):
        close(ea, eb, f"{what} epoch {ea['epoch']}")
    assert a["lr"] == b["lr"]


def close(a, b, what):
    assert set(a) == set(b), what
    for k in a:
        if not k.startswith("time/"):
            assert math.isclose(a[k], b[k], rel_tol=1e-9, abs_tol=1e-12) or (math.isnan(a[k]) and math.isnan(b[k])), \
                f"{what} {k}: {a[k]} vs {b[k]}"


def ckpt_state(out_dir, name):
    return torch.load(out_dir / "checkpoints" / name, map_location="cpu", weights_only=False)["state_dict"]


@pytest.mark.parametrize("case", list(CASES))
def test_each_stacked_seed_equals_the_seed_trained_alone(case, tmp_path):
    ov = BASE + CASES[case]
    alone = [train(job_cfg(ov + [f"seed={s}"], tmp_path / f"alone{s}")) for s in SEEDS]
    infos = []
    cfgs = [job_cfg(ov + [f"seed={s}"], tmp_path / f"stacked{s}", infos) for s in SEEDS]
    assert why_not_stacked(cfgs[0]) is None
    stacked = train_group(cfgs, infos)
    for s, a, b in zip(SEEDS, alone, stacked):
        assert a["status"] == b["status"] == "ok", b.get("error")
        same_summary(a, b, f"seed {s}")
        assert len(b["epochs"]) == 2
        da, db = tmp_path / f"alone{s}", tmp_path / f"stacked{s}"
        assert sorted(p.name for p in (da / "checkpoints").iterdir()) == \
            sorted(p.name for p in (db / "checkpoints").iterdir())
        for name in ("last.ckpt",):
            wa, wb = ckpt_state(da, name), ckpt_state(db, name)
            assert set(wa) == set(wb)
            for k in wa:
                assert torch.allclose(wa[k].double(), wb[k].double(), rtol=1e-9, atol=1e-12), f"seed {s} {k}"
        assert (db / "config_resolved.yaml").is_file()


def test_a_diverging_seed_fails_alone_and_the_others_go_on(tmp_path):
    ov = BASE + ["model.hidden=[8]"]
    cfgs = [job_cfg(ov + [f"seed={s}"], tmp_path / f"s{s}") for s in (1, 2, 3)]

    def poison_seed_1(net):  # seed index 1's slice of the first weight becomes NaN
        w = net.stages[0].op[1].parametrizations.weight.original
        with torch.no_grad():
            w.view(3, -1)[1].fill_(float("nan"))

    out = train_group(cfgs, [INFO] * 3, on_stacked=poison_seed_1)
    assert [o["status"] for o in out] == ["ok", "failed", "ok"]
    assert out[1]["error"].startswith("Diverged: gradient norm is nan at epoch 0, step 0")
    saved = json.loads((tmp_path / "s2" / "summary.json").read_text())
    assert saved["status"] == "failed" and not (tmp_path / "s2" / "checkpoints" / "last.ckpt").exists()
    alone = train(job_cfg(ov + ["seed=3"], tmp_path / "alone3"))
    close(alone["metrics"], out[2]["metrics"], "seed 3 next to a diverged seed")


def test_what_cannot_stack_says_why(tmp_path):
    cfg = job_cfg(BASE + ["model.neuron=sigma_delta"], tmp_path / "x")
    assert "model.neuron=sigma_delta" in why_not_stacked(cfg)
    cfg = job_cfg(BASE + ["quant.state_bits=4"], tmp_path / "y")
    assert "state_bits" in why_not_stacked(cfg)


def test_report_over_a_stacked_sweep_equals_the_report_over_joblib_jobs(tmp_path):
    grid = ["seed=1,2", "quant.bits=4,32", "model.hidden=[8]", *BASE, "logger=none", "callbacks.lr_monitor=null",
            "surrogate=sg_triangular"]
    for launcher in ("stacked", "joblib"):
        r = run_script("train.py", "-m", f"launcher={launcher}", *grid, f"hydra.sweep.dir={tmp_path / launcher}")
        assert r.returncode == 0, r.stderr[-2000:]
    if launcher == "joblib":
        assert "Stacked launcher: 4 jobs in 2 groups" not in r.stderr
    from qsnn.report import make_report

    reports = [make_report([tmp_path / name], plots=False) for name in ("stacked", "joblib")]
    csv = [res["csv"].read_text() for res in reports]
    assert csv[0] == csv[1] and csv[0].count("\n") >= 2
    md = [res["md"].read_text().replace(str(tmp_path / name), "DIR") for res, name in zip(reports, ("stacked", "joblib"))]
    assert md[0] == md[1]

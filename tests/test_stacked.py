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
from qsnn.run.runner import train
from qsnn.run.summary import hydra_info
from qsnn.stacked.group import train_group
from qsnn.stacked.support import why_not_stacked

BASE = ["trainer.max_epochs=2", "trainer.limit_train_batches=3", "trainer.limit_val_batches=2",
        "trainer.limit_test_batches=1", "print_config=false", "callbacks.progress_bar=null", "logger=csv",
        "trainer.precision=64", "torch_threads=1", "trainer.log_every_n_steps=4"]
CSNN = ["model=csnn", "model.channels=[3]", "model.kernel_size=3", "model.batchnorm=true", "data.batch_size=16"]
# every snnTorch surrogate in conf/surrogate/ and one sg_* shape, across fcsnn/csnn, both quantizers,
# BatchNorm, dropout, learned beta/threshold, per-channel scales, gradient clipping
CASES = {
    "fc-uniform-fast_sigmoid-dropout": ["surrogate=fast_sigmoid", "model.dropout=0.3", "model.learn_beta=true"],
    "fc-sigmoid_sum-atan": ["quant=sigmoid_sum", "surrogate=atan", "model.learn_threshold=true"],
    "fc-uniform-straight_through": ["surrogate=straight_through", "quant.bits=2", "model.reset=zero"],
    "csnn-uniform-sigmoid-bn": [*CSNN, "surrogate=sigmoid", "quant.per_channel=true", "model.dropout=0.2"],
    "csnn-sigmoid_sum-triangular-bn": [*CSNN, "quant=sigmoid_sum", "surrogate=triangular",
                                       "trainer.gradient_clip_val=0.05"],
    "fc-sg_gaussian-fp32weights": ["surrogate=sg_gaussian", "quant.bits=32", "sched=cosine_restart"],
    # a study's tuning trials: members differ in seed, optim.lr and the schedule's own parameter
    "fc-trials-lr-and-period-differ": ["sched=cosine_restart", "optim=adamw"],
}
SEEDS = (3, 7)
MEMBERS = {"fc-trials-lr-and-period-differ": [["seed=1000", "optim.lr=0.002", "sched.T_0_frac=0.3"],
                                              ["seed=1001", "optim.lr=0.015", "sched.T_0_frac=0.6"]]}
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
    """Everything a single run's summary.json holds, equal, but timings and the output dir (the
    "dead network?" warnings too: both loops call the same qsnn.run.guard.DeadNetworkMonitor)."""
    assert set(a) == set(b), f"{what}: {set(a) ^ set(b)}"
    for k in set(a) - {"epochs", "lr", "metrics", "output_dir", "startup_s", "fit_s", "wall_s", "cost_s"}:
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
    members = MEMBERS.get(case, [[f"seed={s}"] for s in SEEDS])
    # the second member is the one off the diagonal; compare both where they differ in more than the seed
    compared = range(2) if case == next(iter(CASES)) or case in MEMBERS else range(1, 2)
    alone = [train(job_cfg(ov + members[s], tmp_path / f"alone{s}")) for s in compared]
    infos = []
    cfgs = [job_cfg(ov + m, tmp_path / f"stacked{s}", infos) for s, m in enumerate(members)]
    assert why_not_stacked(cfgs[0]) is None
    stacked = train_group(cfgs, infos)[-len(compared):]
    if case in MEMBERS:  # each member ran on its own LR schedule
        assert len({tuple(b["lr"]) for b in stacked}) == len(members)
    for s, a, b in zip(compared, alone, stacked):
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


def test_a_dead_network_is_flagged_in_a_stacked_seed_as_in_its_single_run(tmp_path):
    """The stacked loop calls the single run's DeadNetworkMonitor: same "dead network?" warning."""
    ov = BASE + ["model.hidden=[8]", "optim.lr=1e9", "seed=1"]
    alone = train(job_cfg(ov, tmp_path / "alone"))
    (stacked,) = train_group([job_cfg(ov, tmp_path / "stacked")], [INFO])
    assert alone["warnings"] and alone["warnings"] == stacked["warnings"]
    assert json.loads((tmp_path / "stacked" / "summary.json").read_text())["warnings"] == alone["warnings"]


def test_what_cannot_stack_says_why(tmp_path):
    for model in ("fcsnn", "csnn"):  # conf/'s defaults stack (a new default callback or trainer key must be handled)
        assert why_not_stacked(job_cfg([f"model={model}", "quant=sigmoid_sum"], tmp_path / model)) is None
    cfg = job_cfg(BASE + ["model.neuron=sigma_delta"], tmp_path / "x")
    assert "model.neuron=sigma_delta" in why_not_stacked(cfg)
    cfg = job_cfg(BASE + ["quant.state_bits=4"], tmp_path / "y")
    assert "state_bits" in why_not_stacked(cfg)


def test_report_over_a_stacked_sweep_equals_the_report_over_joblib_jobs(tmp_path):
    grid = ["seed=1,2", "quant.bits=4,32", "model.hidden=[8]", *BASE, "logger=none", "callbacks.lr_monitor=null",
            "surrogate=sg_triangular"]
    for launcher in ("stacked", "joblib"):  # stacked: its 2 groups one after another in this one process
        r = run_script("train.py", "-m", f"launcher={launcher}", *grid, f"hydra.sweep.dir={tmp_path / launcher}",
                       *(["hydra.launcher.n_jobs=1"] if launcher == "stacked" else []))
        assert r.returncode == 0, r.stderr[-2000:]
        assert ("Stacked launcher: 4 jobs in 2 groups" in r.stderr + r.stdout) == (launcher == "stacked")
    from qsnn.study.report import make_report

    reports = [make_report([tmp_path / name], plots=False) for name in ("stacked", "joblib")]
    csv = [res["csv"].read_text() for res in reports]
    assert csv[0] == csv[1] and csv[0].count("\n") >= 2
    md = [res["md"].read_text().replace(str(tmp_path / name), "DIR") for res, name in zip(reports, ("stacked", "joblib"))]
    assert md[0] == md[1]


def test_kill_and_resume_a_stacked_sweep_is_bit_identical(tmp_path):
    import os
    import signal
    import subprocess
    import time

    from conftest import PY, ROOT

    grid = ["-m", "launcher=stacked", "seed=1,2", "model.hidden=[8]", "trainer.max_epochs=4",
            "trainer.limit_train_batches=12", "trainer.limit_val_batches=2", "trainer.limit_test_batches=1",
            "print_config=false", "callbacks.progress_bar=null", "logger=csv", "torch_threads=1"]
    r = run_script("train.py", *grid, f"hydra.sweep.dir={tmp_path / 'whole'}")
    assert r.returncode == 0, r.stderr[-2000:]
    killed = tmp_path / "killed"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_SERVICE", "WANDB__SERVICE"))}
    p = subprocess.Popen([PY, str(ROOT / "src" / "train.py"), *grid, f"hydra.sweep.dir={killed}"], cwd=ROOT,
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    resume_files = [killed / str(i) / "checkpoints" / "last.ckpt" for i in (0, 1)]
    deadline = time.time() + 300
    while not all(f.is_file() for f in resume_files) and p.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.killpg(p.pid, signal.SIGKILL)  # no clean-up at all: the checkpoints on disk are all there is
    p.wait()
    assert not (killed / "0" / "summary.json").exists(), "the run ended before it could be killed"
    r = run_script("train.py", *grid, "resume=true", f"hydra.sweep.dir={killed}")
    assert r.returncode == 0, r.stderr[-2000:]
    for i in ("0", "1"):
        a = json.loads((tmp_path / "whole" / i / "summary.json").read_text())
        b = json.loads((killed / i / "summary.json").read_text())
        assert b["status"] == "ok" and b["resumed_from"].endswith("last.ckpt")
        for k in set(a) - {"startup_s", "fit_s", "wall_s", "cost_s", "resumed_from", "overrides", "output_dir"}:
            if k == "epochs":
                a[k] = [{m: v for m, v in e.items() if m != "time/epoch_s"} for e in a[k]]
                b[k] = [{m: v for m, v in e.items() if m != "time/epoch_s"} for e in b[k]]
            if k == "metrics":
                a[k].pop("time/epoch_s", None), b[k].pop("time/epoch_s", None)
            assert a[k] == b[k], f"job {i}: {k}"
        wa, wb = ckpt_state(tmp_path / "whole" / i, "last.ckpt"), ckpt_state(killed / i, "last.ckpt")
        assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_jobs_are_grouped_by_everything_but_the_seed_and_optimizer_and_schedule_values():
    from hydra_plugins.qsnn_stacked_launcher._core import seed_groups

    jobs = [["quant.bits=4", "seed=1"], ["quant.bits=32", "seed=1"], ["quant.bits=4", "seed=2"],
            ["quant.bits=32", "seed=2"], ["quant.bits=4", "+seed=3"]]
    assert [[i for i, _ in g] for g in seed_groups(jobs, max_seeds=64)] == [[0, 2, 4], [1, 3]]
    assert [[i for i, _ in g] for g in seed_groups(jobs, max_seeds=2)] == [[0, 2], [4], [1, 3]]
    trials = [["sched=cosine_restart", "optim.lr=0.01", "sched.T_0_frac=0.2", "seed=1000"],
              ["sched=cosine_restart", "optim.lr=0.003", "sched.T_0_frac=0.4", "seed=1001"],
              ["sched=cosine", "optim.lr=0.01", "seed=1000"],  # another schedule: another group
              ["sched=cosine_restart", "optim._target_=torch.optim.SGD", "optim.lr=0.01", "seed=1000"]]
    assert [[i for i, _ in g] for g in seed_groups(trials, max_seeds=64)] == [[0, 1], [2], [3]]


def test_member_optimizers_state_round_trip_when_members_differ():
    """Per-member optimizers and schedules (tuning trials) save each member's state in the single
    run's format and load it back (a killed tuning phase resumes from these checkpoints)."""
    from functools import partial
    from types import SimpleNamespace

    from qsnn.stacked.optim import MemberOptimizers

    def module(lr, gamma):
        return SimpleNamespace(optimizer_factory=partial(torch.optim.Adam, lr=lr),
                               scheduler_factory=lambda o, **_: torch.optim.lr_scheduler.StepLR(o, 1, gamma=gamma))

    shapes = [torch.Size([3, 2]), torch.Size([3])]
    mods = [module(0.1, 0.5), module(0.01, 0.9)]

    def build():
        torch.manual_seed(0)
        params = [torch.nn.Parameter(torch.randn(6, 2)), torch.nn.Parameter(torch.randn(6))]
        return params, MemberOptimizers(params, shapes, mods, shared=False, steps_per_epoch=1, total_steps=4)

    params, opt = build()
    for _ in range(2):
        opt.zero_grad()
        sum((p ** 2).sum() for p in params).backward()
        opt.step([0, 1])
    assert [opt.lr(0), opt.lr(1)] == pytest.approx([0.1 * 0.25, 0.01 * 0.81])
    states = [opt.state(s) for s in range(2)]
    assert states[0][0]["state"][0]["exp_avg"].shape == shapes[0]  # the single run's shapes
    params2, opt2 = build()
    opt2.load(states)
    assert [opt2.lr(0), opt2.lr(1)] == [opt.lr(0), opt.lr(1)]
    for s in range(2):
        for i in range(2):
            assert torch.equal(opt2.opts[s].state_dict()["state"][i]["exp_avg"], states[s][0]["state"][i]["exp_avg"])


def test_a_stacked_member_whose_dir_is_busy_is_refused_alone(tmp_path):
    """Each member's output dir is locked as runner.train locks its own: a busy one is refused with
    the one RunDirBusy line and nothing written there; the other trains; every lock is released."""
    from qsnn.run.run_dir import locked
    from test_run_dir import held_by_another_process

    ov = BASE + ["model.hidden=[8]", "trainer.max_epochs=1"]
    cfgs = [job_cfg(ov + [f"seed={s}"], tmp_path / f"s{s}") for s in (1, 2)]
    busy = tmp_path / "s1"
    with held_by_another_process(busy):
        out = train_group(cfgs, [INFO] * 2)
    assert out[0]["status"] == "failed" and out[0]["error"].startswith("RunDirBusy: output dir")
    assert not list(busy.iterdir())  # its summary, config and checkpoints are the other job's to write
    assert out[1]["status"] == "ok" and (tmp_path / "s2" / "checkpoints" / "last.ckpt").is_file()
    for d in (busy, tmp_path / "s2"):
        with locked(d):  # released when the group ended
            pass


def test_two_stacked_sweeps_on_one_dir_train_each_job_once(tmp_path):
    """Two `launcher=stacked` sweeps started together on one sweep dir: each job trains in one of
    them; the other refuses it (busy, or already holds a run). One W&B run per job dir."""
    import subprocess

    from conftest import PY, ROOT
    from test_resume import job_env

    sweep = tmp_path / "stk"
    cmd = [PY, str(ROOT / "src/train.py"), "-m", "launcher=stacked", "data=randman", "seed=1,2",
           "trainer.max_epochs=3", "print_config=false", "torch_threads=1", f"hydra.sweep.dir={sweep}",
           f"paths.log_dir={tmp_path / 'logs'}"]
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=job_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for _ in range(2)]
    logs = [p.communicate(timeout=400)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs[0][-2000:] + logs[1][-2000:]
    for job in ("0", "1"):
        summary = json.loads((sweep / job / "summary.json").read_text())
        assert summary["status"] == "ok" and len(summary["epochs"]) == 3
        assert len(list((sweep / job / "wandb").glob("*run-*"))) == 1  # one W&B run, not two under one id
        refused = [log for log in logs if f"{sweep / job} is in use by another running job" in log
                   or f"output dir {sweep / job} already holds a run" in log]
        assert len(refused) == 1, "a job was trained by both sweeps"

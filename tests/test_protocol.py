"""The protocol's decisions on constructed results with known answers (no training)."""
from __future__ import annotations

import numpy as np
import pytest

from qsnn.study.protocol import Protocol, analyze, arm_id, select_best, trial_params, tune_jobs

ARMS = {"quant.bits": [4, 32], "sched": ["constant", "cosine"]}


def proto(**confirm):
    return Protocol.from_cfg({
        "arms": ARMS, "baseline": {"quant.bits": 32, "sched": "constant"},
        "tune": {"trials": 3, "space": {"optim.lr": ["log_uniform", 1e-3, 1e-2]},
                 "per_choice": {"sched=cosine": {"sched.T_max_frac": ["uniform", 0.1, 0.5]}}},
        "confirm": {"seeds": [5, 10, 20], "margin": 0.01, **confirm}})


def results(means: dict[str, float], sd: float, n: int = 20, seed: int = 0) -> dict[str, dict[int, float]]:
    rng = np.random.default_rng(seed)
    return {a: {s: float(m + sd * rng.standard_normal()) for s in range(1, n + 1)} for a, m in means.items()}


def test_identical_arms_end_equivalent_or_unresolved_at_n_max():
    p = proto()
    r = analyze(p, results({a: 0.9 for a in ("4-constant", "4-cosine", "32-constant", "32-cosine")}, sd=0.01))
    assert r["finished"]
    for h, st in r["hyps"].items():
        if st["kind"] == "eq":
            assert st["status"] in ("rejected", "unresolved")
        elif st["kind"] in ("base", "gap"):  # no difference may be claimed between identical arms
            assert st["status"] in ("unresolved", "closed"), h


def test_well_separated_arms_resolve_at_the_first_look_with_no_extra_seeds():
    p = proto()
    means = {"4-constant": 0.50, "4-cosine": 0.70, "32-constant": 0.98, "32-cosine": 0.85}
    r = analyze(p, results(means, sd=0.0005, n=5))  # only the first look's 5 seeds exist
    assert r["finished"] and not r["pending"] and len(r["looks"]) == 1
    assert r["n"] == {a: 5 for a in means}
    assert all(st["status"] in ("rejected", "closed") for st in r["hyps"].values())
    assert r["hyps"]["gap:constant"]["diff"] == pytest.approx(0.48, abs=0.01)


def test_a_borderline_pair_gets_more_seeds_and_nothing_else_does():
    p = proto()
    # 32-bit arms tie (borderline for the "best of 32 bits" and the baseline comparison); the rest is far apart
    means = {"4-constant": 0.50, "4-cosine": 0.70, "32-constant": 0.950, "32-cosine": 0.946}
    r = analyze(p, results(means, sd=0.004, n=5))
    assert not r["finished"]
    assert set(r["pending"]) == {"32-constant", "32-cosine"}
    assert r["pending"]["32-cosine"] == list(range(6, 11))


def test_tuning_uses_common_draws_and_selects_on_validation_never_test():
    p = proto()
    lr = [t["optim.lr"] for t in trial_params(p, {"quant.bits": "4", "sched": "constant"})]
    assert lr == [t["optim.lr"] for t in trial_params(p, {"quant.bits": "32", "sched": "cosine"})]
    assert "sched.T_max_frac" in trial_params(p, {"quant.bits": "4", "sched": "cosine"})[0]
    jobs = tune_jobs(p)
    assert len(jobs) == 4 * 3 and all("seed=100" in " ".join(j["overrides"]) for j in jobs)
    # a trial's dir: phase/arm/seed; the seeds of an arm differ only in seed= (stacked launcher groups them)
    assert jobs[0]["dir"] == "tune/4-constant/s1000" and "study_job=tune/4-constant" in jobs[0]["overrides"]
    # trial 1 is best on val, trial 2 best on test: the selection must pick trial 1
    res = {}
    for j in jobs:
        val = {0: 0.80, 1: 0.90, 2: 0.85}[j["trial"]]
        test = {0: 0.80, 1: 0.70, 2: 0.99}[j["trial"]]
        res[j["dir"]] = {"status": "ok", "metrics": {"val/acc_best": val, "test/acc": test}}
    best = select_best(p, res)
    assert {b["trial"] for b in best.values()} == {1}
    assert set(best) == {arm_id(a) for a in p.arm_list()}


def test_trials_tied_on_val_acc_are_ranked_by_val_loss_at_their_best_epochs():
    p = proto()
    epochs = {0: [(0.9, 0.30), (1.0, 0.20)], 1: [(1.0, 0.25), (1.0, 0.12), (0.98, 0.05)], 2: [(0.95, 0.10)]}
    res = {}
    for j in tune_jobs(p):
        hist = [{"epoch": e, "val/acc": a, "val/loss": loss} for e, (a, loss) in enumerate(epochs[j["trial"]])]
        res[j["dir"]] = {"status": "ok", "epochs": hist,
                         "metrics": {"val/acc_best": max(a for a, _ in epochs[j["trial"]]), "val/loss": hist[-1]["val/loss"]}}
    best = select_best(p, res)["4-constant"]
    # trial 1 reached 100% with loss 0.12 (its last epoch's 0.05 came at 98%): it beats trial 0's 0.20
    assert best["trial"] == 1 and best["by_tie_break"] and best["tie_break"] == 0.12
    assert best["scores"] == {0: (1.0, 0.20), 1: (1.0, 0.12), 2: (0.95, 0.10)}
    p.tie_break = None  # without a tie-break the earlier trial wins the tie
    assert select_best(p, res)["4-constant"]["trial"] == 0

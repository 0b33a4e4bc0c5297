"""The study protocol: arms, the tuning phase and the confirmation rounds (pure functions of the
study's ``protocol:`` block and the finished jobs; ``src/study.py`` runs the jobs).

- An *arm* is one combination of the compared choices (``protocol.arms``, e.g. bits x sched x
  surrogate). Its directory name joins its values: ``4-cosine-atan``.
- *Tune*: every arm gets the same ``tune.trials`` trials of a fixed random search (Schmidt et al.
  2021 also tune by random search). Common random numbers: trial i draws the same values of the
  shared space (``tune.space``, e.g. log-uniform ``optim.lr``) for every arm, and every arm with the
  same choice (e.g. ``sched=cosine_restart``) the same values of that choice's own parameters
  (``tune.per_choice``), all on tuning seed ``tune.seed_offset + i``. So the arms differ only in what
  is compared, the budget is equal by construction, a trial is a fixed job (resumable, any launcher),
  and no trial depends on another's result (unlike TPE, whose trials would differ across arms and
  with the launcher's parallelism). The best trial per arm is chosen on ``tune.select`` (validation,
  e.g. val/acc_best), never on test; trials tied on it are ranked by ``tune.tie_break`` (lowest, e.g.
  val/loss, at the epochs where the select metric was at its best): on a small validation split
  several trials reach 100% and a tie would otherwise go to the earlier trial.
- *Confirm*: each arm at its best configuration on fresh seeds 1, 2, ... (tuning seeds are never
  reused); ``confirm.seeds`` lists the seeds per arm at each look (e.g. [5, 10, 20]). After each
  look the planned comparisons are tested (``qsnn.study.group_sequential``: Holm across comparisons with
  Lan-DeMets O'Brien-Fleming boundaries across looks); only arms in comparisons still unresolved
  get the next look's seeds. ``analyze`` replays the looks from the finished jobs, so a re-launched
  study continues where it stopped and reaches the same decisions.

Planned comparisons (metric ``confirm.metric``, test accuracy, confirmation seeds only):
  ``base:<arm>``  each arm vs the baseline arm (two-sided Welch);
  ``gap:<rest>``  full- minus low-bit for each combination of the other choices (two-sided Welch), and
  ``eq:<rest>``   the same gap within +-``confirm.margin`` (TOST);
  ``top:<bits>``  the best arm of a bit-width vs its runner-up (by mean at that look; the pair may
                  change between looks: a data-chosen pair, so its p-value is optimistic).
"""
from __future__ import annotations

import itertools
import math
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from qsnn.study.group_sequential import holm_sequential, information_fraction, tost
from qsnn.study.stats import welch


# ----------------------------------------------------------------------------- arms
@dataclass
class Protocol:
    arms: dict[str, list[str]]
    baseline: dict[str, str]
    trials: int
    space: dict[str, list]
    per_choice: dict[str, dict[str, list]]
    tune_seed: int = 0
    seed_offset: int = 1000
    select: str = "val/acc_best"
    tie_break: str | None = "val/loss"
    seeds: list[int] = field(default_factory=lambda: [5, 10, 20])
    metric: str = "test/acc"
    alpha: float = 0.05
    margin: float = 0.01
    bits_key: str = "quant.bits"

    @classmethod
    def from_cfg(cls, p: Any) -> "Protocol":
        from omegaconf import OmegaConf

        p = OmegaConf.to_container(p, resolve=True) if not isinstance(p, dict) else p
        t, c = p.get("tune", {}), p.get("confirm", {})
        seeds = [int(s) for s in c.get("seeds", [5, 10, 20])]
        if not seeds or seeds[0] < 2 or any(b <= a for a, b in zip(seeds, seeds[1:])):
            raise ValueError(f"protocol.confirm.seeds={seeds}: increasing seed counts, the first >= 2")
        return cls(arms={k: [str(v) for v in vs] for k, vs in p["arms"].items()},
                   baseline={k: str(v) for k, v in (p.get("baseline") or {}).items()},
                   trials=int(t.get("trials", 8)), space=dict(t.get("space") or {}),
                   per_choice={k: dict(v) for k, v in (t.get("per_choice") or {}).items()},
                   tune_seed=int(t.get("seed", 0)), seed_offset=int(t.get("seed_offset", 1000)),
                   select=t.get("select", "val/acc_best"), tie_break=t.get("tie_break", "val/loss"), seeds=seeds, metric=c.get("metric", "test/acc"),
                   alpha=float(c.get("alpha", 0.05)), margin=float(c.get("margin", 0.01)),
                   bits_key=p.get("bits_key", "quant.bits"))

    def arm_list(self) -> list[dict[str, str]]:
        keys = list(self.arms)
        return [dict(zip(keys, vs)) for vs in itertools.product(*self.arms.values())]

    @property
    def n_max(self) -> int:
        return self.seeds[-1]


def arm_id(arm: dict[str, str]) -> str:
    return "-".join(str(v).replace("/", "_") for v in arm.values())


def overrides(d: dict[str, Any]) -> list[str]:
    return [f"{k}={v}" for k, v in d.items()]


# A job's dir is <study dir>/<study_job>/s<seed>: study_job (phase/arm) is the same for every seed of
# an arm, so the seeds of one arm differ only in seed= (launcher=stacked groups them into one process).
SUBDIR = "hydra.sweep.subdir=${study_job}/s${seed}"


def job(phase: str, arm: dict[str, str], params: dict[str, str], seed: int, **extra) -> dict:
    aid = arm_id(arm)
    return {"dir": f"{phase}/{aid}/s{seed}", "arm": aid, "seed": seed, **extra,
            "overrides": overrides({**arm, **params, "study_job": f"{phase}/{aid}", "seed": seed})}


# ----------------------------------------------------------------------------- tune
def _draw(spec: list, rng: np.random.Generator, n: int) -> list[str]:
    kind, lo, hi = spec[0], float(spec[1]), float(spec[2])
    if kind == "log_uniform":
        xs = np.exp(rng.uniform(math.log(lo), math.log(hi), n))
    elif kind == "uniform":
        xs = rng.uniform(lo, hi, n)
    else:
        raise ValueError(f"protocol.tune: {kind!r} is not a distribution: use log_uniform or uniform")
    return [f"{x:.4g}" for x in xs]


def trial_params(p: Protocol, arm: dict[str, str]) -> list[dict[str, str]]:
    """The trials' hyperparameters of one arm (common random numbers: see the module doc)."""
    def draws(space: dict, salt: str) -> dict[str, list[str]]:
        rng = np.random.default_rng([p.tune_seed, zlib.crc32(salt.encode())])
        return {k: _draw(space[k], rng, p.trials) for k in sorted(space)}

    cols = draws(p.space, "shared")
    for choice, space in sorted(p.per_choice.items()):
        k, v = choice.split("=", 1)
        if str(arm.get(k)) == v:
            cols.update(draws(space, choice))
    return [{k: cols[k][i] for k in cols} for i in range(p.trials)]


def tune_jobs(p: Protocol) -> list[dict]:
    return [job("tune", arm, params, p.seed_offset + i, trial=i)
            for arm in p.arm_list() for i, params in enumerate(trial_params(p, arm))]


def trial_score(p: Protocol, summary: dict) -> tuple[float, float] | None:
    """(``p.select``, ``p.tie_break``) of a finished ok trial, None otherwise. The tie-break is the
    lowest ``p.tie_break`` over the epochs where the select metric's per-epoch value (``val/acc`` for
    ``val/acc_best``) reached the selected value: the checkpoint that value came from."""
    metrics = summary.get("metrics") or {} if summary.get("status") == "ok" else {}
    v = metrics.get(p.select)
    if v is None or not math.isfinite(float(v)):
        return None
    if not p.tie_break:
        return float(v), math.nan
    key = p.select.removesuffix("_best")
    at = [e[p.tie_break] for e in summary.get("epochs") or [] if e.get(key) == v and p.tie_break in e]
    tie = min(at) if at else metrics.get(p.tie_break, math.nan)
    return float(v), float(tie) if tie is not None else math.nan


def select_best(p: Protocol, results: dict[str, dict]) -> dict[str, dict]:
    """Per arm, the trial with the highest ``p.select`` (validation) among finished trials, ties
    ranked by the lowest ``p.tie_break``, then by trial order. ``results``: job dir -> summary. Test
    metrics are not looked at. Each arm's entry keeps every trial's scores (``scores``: trial ->
    (select, tie_break)) and whether the tie-break decided (``by_tie_break``)."""
    best = {}
    for arm in p.arm_list():
        aid = arm_id(arm)
        params = trial_params(p, arm)
        scores = {i: sc for i in range(p.trials)
                  if (sc := trial_score(p, results.get(f"tune/{aid}/s{p.seed_offset + i}") or {})) is not None}
        if not scores:
            continue
        rank = {i: (-v, tie if math.isfinite(tie) else math.inf, i) for i, (v, tie) in scores.items()}
        i = min(rank, key=rank.get)
        tied = [j for j, (v, _) in scores.items() if v == scores[i][0]]
        best[aid] = {"trial": i, "params": params[i], "select": scores[i][0], "tie_break": scores[i][1],
                     "n_ok": len(scores), "scores": scores, "by_tie_break": len(tied) > 1}
    return best


def confirm_job(p: Protocol, arm: dict[str, str], params: dict[str, str], seed: int) -> dict:
    return job("confirm", arm, params, seed)


# ----------------------------------------------------------------------------- confirm: the looks
def planned(p: Protocol, data: dict[str, list[float]]) -> dict[str, tuple[str, str, str]]:
    """Hypothesis id -> (kind, arm a, arm b); the test is on mean(a) - mean(b)."""
    arms = {arm_id(a): a for a in p.arm_list()}
    base = next((aid for aid, a in arms.items() if all(a.get(k) == v for k, v in p.baseline.items())), None)
    hyps: dict[str, tuple[str, str, str]] = {}
    if base is not None and p.baseline:
        for aid in arms:
            if aid != base:
                hyps[f"base:{aid}"] = ("base", aid, base)
    bk = p.bits_key if p.bits_key in p.arms else None
    if bk:
        widths = sorted(p.arms[bk], key=int)
        hi, lo = widths[-1], widths[0]
        rest_keys = [k for k in p.arms if k != bk]
        for rest in itertools.product(*(p.arms[k] for k in rest_keys)):
            a_hi = arm_id({k: (hi if k == bk else rest[rest_keys.index(k)]) for k in p.arms})
            a_lo = arm_id({k: (lo if k == bk else rest[rest_keys.index(k)]) for k in p.arms})
            name = "-".join(rest) or "all"
            hyps[f"gap:{name}"] = ("gap", a_hi, a_lo)
            hyps[f"eq:{name}"] = ("eq", a_hi, a_lo)
    groups: dict[str, list[str]] = {}
    for aid, a in arms.items():
        groups.setdefault(a.get(bk, "all") if bk else "all", []).append(aid)
    for b, aids in groups.items():
        ranked = sorted((aid for aid in aids if len(data.get(aid, [])) >= 2),
                        key=lambda aid: (-float(np.mean(data[aid])), aid))
        if len(ranked) >= 2:
            hyps[f"top:{b}"] = ("top", ranked[0], ranked[1])
    return hyps


def _test(kind: str, a: list[float], b: list[float], margin: float) -> dict:
    w = welch(a, b)
    p = tost(a, b, margin) if kind == "eq" else w["p"]
    return {"diff": w["diff"], "ci_low": w["ci_low"], "ci_high": w["ci_high"], "p": p}


def analyze(p: Protocol, done: dict[str, dict[int, float]]) -> dict:
    """Replay the looks on the finished confirmation jobs.

    ``done``: arm id -> {seed: metric value (nan when the job failed)} for finished jobs.
    Returns {"looks": [...], "hyps": {id: final state}, "n": seeds per arm, "pending": {arm: [seeds]},
    "finished": bool}. Pending seeds are those the current look still needs.
    """
    arms = [arm_id(a) for a in p.arm_list()]
    n = {aid: p.seeds[0] for aid in arms}
    level = {aid: 0 for aid in arms}
    state: dict[str, dict] = {}
    looks: list[dict] = []
    n_family = None
    rejected = 0
    while True:
        missing = {aid: [s for s in range(1, n[aid] + 1) if s not in done.get(aid, {})] for aid in arms}
        missing = {aid: s for aid, s in missing.items() if s}
        if missing:
            return {"looks": looks, "hyps": state, "n": n, "pending": missing, "finished": False}
        data = {aid: [v for s, v in sorted(done[aid].items()) if s <= n[aid] and math.isfinite(v)] for aid in arms}
        hyps = planned(p, data)
        if n_family is None:
            n_family = len(hyps) + sum(k not in hyps for k in ("top:" + b for b in _bit_groups(p)))
        for h, (kind, a, b) in hyps.items():
            st = state.setdefault(h, {"kind": kind, "status": "open", "fractions": []})
            if st["status"] != "open":
                continue
            st.update(a=a, b=b, n_a=len(data[a]), n_b=len(data[b]), **_test(kind, data[a], data[b], p.margin))
            if len(data[a]) < 2 or len(data[b]) < 2:
                continue
            t = information_fraction(len(data[a]), len(data[b]), p.n_max)
            if not st["fractions"] or t > st["fractions"][-1] + 1e-12:
                st["fractions"].append(t)
        open_ = {h for h in hyps if state[h]["status"] == "open" and state[h]["fractions"]
                 and state[h]["fractions"][-1] == information_fraction(state[h]["n_a"], state[h]["n_b"], p.n_max)}
        res = holm_sequential({h: state[h]["p"] for h in open_}, {h: state[h]["fractions"] for h in open_},
                              open_, n_family, rejected, alpha=p.alpha,
                              one_sided=frozenset(h for h in open_ if state[h]["kind"] == "eq"))
        look = {"n": dict(n), "tests": {}}
        for h, r in res.items():
            state[h].update(level=r.get("level"), boundary=r.get("boundary"), nominal=r.get("nominal"))
            look["tests"][h] = {k: state[h].get(k) for k in ("a", "b", "n_a", "n_b", "diff", "p", "nominal")}
            look["tests"][h]["rejected"] = r["rejected"]
            if r["rejected"]:
                rejected += 1
                state[h]["status"] = "rejected"
                state[h]["look"] = len(looks) + 1
        _close_gap_pairs(state)
        looks.append(look)
        grow = set()
        for h, st in state.items():
            if st["status"] == "open" and h in hyps:
                grow |= {st["a"], st["b"]}
        grow = {aid for aid in grow if level[aid] + 1 < len(p.seeds)}
        if not grow:
            for st in state.values():
                if st["status"] == "open":
                    st["status"] = "unresolved"
            return {"looks": looks, "hyps": state, "n": n, "pending": {}, "finished": True, "family": n_family,
                    "values": data}
        for aid in grow:
            level[aid] += 1
            n[aid] = p.seeds[level[aid]]


def _bit_groups(p: Protocol) -> list[str]:
    return list(p.arms[p.bits_key]) if p.bits_key in p.arms else ["all"]


def _close_gap_pairs(state: dict[str, dict]) -> None:
    """A bit gap is resolved when either of its tests rejects (different, or within the margin)."""
    for h, st in state.items():
        if st["kind"] == "gap":
            eq = state.get("eq:" + h.split(":", 1)[1])
            if eq and (st["status"] == "rejected" or eq["status"] == "rejected"):
                for x in (st, eq):
                    if x["status"] == "open":
                        x["status"] = "closed"

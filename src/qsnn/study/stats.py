"""Significance over seeds for the sweep report: per-setting confidence intervals, Welch's t-test
against a baseline, Holm correction across the comparisons, and a rough seed-count estimate.

All inputs are plain sequences of floats (one value per seed). scipy does the distributions;
the only arithmetic here is what scipy has no function for (Holm, the sample-size formula).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import stats

NAN = float("nan")


def _arr(values: Sequence[float]) -> np.ndarray:
    return np.asarray(list(values), dtype=float)


def summarize(values: Sequence[float], confidence: float = 0.95) -> dict:
    """n, mean, std (ddof=1), sem and a t-distribution CI of the mean. n<2: std=sem=0, CI=(nan, nan)."""
    x = _arr(values)
    n = len(x)
    mean = float(x.mean()) if n else NAN
    if n < 2:
        return {"n": n, "mean": mean, "std": 0.0, "sem": 0.0, "ci_low": NAN, "ci_high": NAN}
    std = float(x.std(ddof=1))
    sem = std / math.sqrt(n)
    # scipy refuses scale=0; all seeds equal means the interval collapses onto the mean
    lo, hi = stats.t.interval(confidence, n - 1, loc=mean, scale=sem) if sem > 0 else (mean, mean)
    return {"n": n, "mean": mean, "std": std, "sem": sem, "ci_low": float(lo), "ci_high": float(hi)}


def welch(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> dict:
    """mean(a) - mean(b) with its Welch CI, t, Welch-Satterthwaite df and the two-sided p-value.

    Either group with n<2: everything but diff is nan. Both groups constant (zero variance): the
    test is degenerate; p=1 when the means agree, p=0 when they differ, CI=(diff, diff).
    """
    a, b = _arr(a), _arr(b)
    diff = float(a.mean() - b.mean()) if len(a) and len(b) else NAN
    if len(a) < 2 or len(b) < 2:
        return {"diff": diff, "ci_low": NAN, "ci_high": NAN, "t": NAN, "df": NAN, "p": NAN}
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    if va + vb == 0:
        return {"diff": diff, "ci_low": diff, "ci_high": diff, "t": 0.0 if diff == 0 else math.copysign(math.inf, diff),
                "df": float(len(a) + len(b) - 2), "p": 1.0 if diff == 0 else 0.0}
    res = stats.ttest_ind(a, b, equal_var=False)
    ci = res.confidence_interval(confidence)
    return {"diff": diff, "ci_low": float(ci.low), "ci_high": float(ci.high), "t": float(res.statistic),
            "df": float(res.df), "p": float(res.pvalue)}


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values in input order: the i-th smallest of m is multiplied by
    (m - i), then a running max keeps them monotone, capped at 1. nan entries stay nan and do not
    count towards m."""
    p = _arr(pvalues)
    out = np.full(len(p), NAN)
    ok = np.flatnonzero(~np.isnan(p))
    order = ok[np.argsort(p[ok], kind="stable")]
    m = len(order)
    running = 0.0
    for i, idx in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[idx]))
        out[idx] = running
    return out.tolist()


def seeds_needed(diff: float, sd: float, alpha: float = 0.05, power: float = 0.8) -> int | None:
    """Rough seeds per group for a two-sample t-test to detect ``diff`` given pooled ``sd``
    (normal approximation n = 2 ((z_{1-alpha/2} + z_power) sd / diff)^2, rounded up, at least 2).
    None when there is nothing to detect (diff 0) or no spread estimate (sd nan)."""
    if diff == 0 or math.isnan(diff) or sd is None or math.isnan(sd):
        return None
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return max(2, math.ceil(2 * (z * sd / diff) ** 2))


def pooled_sd(a: Sequence[float], b: Sequence[float]) -> float:
    a, b = _arr(a), _arr(b)
    dof = len(a) + len(b) - 2
    if len(a) < 1 or len(b) < 1 or dof < 1:
        return NAN
    ss = (len(a) - 1) * (a.var(ddof=1) if len(a) > 1 else 0.0) + (len(b) - 1) * (b.var(ddof=1) if len(b) > 1 else 0.0)
    return float(math.sqrt(ss / dof))


def compare_to_baseline(groups: dict[str, Sequence[float]], baseline: str, alpha: float = 0.05) -> list[dict]:
    """Each non-baseline setting against ``baseline``: Welch diff/CI/p, Holm-adjusted p across all
    the comparisons, whether it is significant, and (when not) roughly how many seeds per group
    would resolve a difference of the observed size."""
    if baseline not in groups:
        raise KeyError(f"baseline {baseline!r} is not one of the settings: {', '.join(map(str, groups))}")
    base = groups[baseline]
    names = [k for k in groups if k != baseline]
    tests = [welch(groups[k], base) for k in names]
    adjusted = holm([t["p"] for t in tests])
    # size the estimate for the Holm-corrected verdict: Bonferroni's alpha/m is the level that
    # guarantees significance after Holm; and never fewer seeds than the ones that did not suffice
    m = max(sum(not math.isnan(t["p"]) for t in tests), 1)
    rows = []
    for name, t, p_holm in zip(names, tests, adjusted):
        significant = bool(p_holm < alpha)  # nan < alpha is False: untestable counts as not significant
        need = None
        if not significant:
            need = seeds_needed(t["diff"], pooled_sd(groups[name], base), alpha=alpha / m)
            if need is not None:
                need = max(need, min(len(groups[name]), len(base)) + 1)
        rows.append({"setting": name, "diff": t["diff"], "ci_low": t["ci_low"], "ci_high": t["ci_high"],
                     "p": t["p"], "p_holm": p_holm, "significant": significant, "seeds_needed": need})
    return rows

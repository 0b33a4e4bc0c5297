"""Group-sequential testing for the study protocol: alpha spending, Holm across comparisons, TOST.

- ``obf_spent(t, alpha)``: Lan-DeMets O'Brien-Fleming-type spending function (two-sided),
  alpha*(t) = 2 - 2 Phi(z_{1-alpha/2} / sqrt(t)) (Lan & DeMets 1983).
- ``boundaries(fractions, alpha)``: the two-sided z critical values c_1..c_K for looks at
  information fractions t_1 < ... < t_K, such that under H0 the probability of first crossing at
  look k is alpha*(t_k) - alpha*(t_{k-1}). The statistics at the looks are jointly normal with
  corr(Z_i, Z_j) = sqrt(t_i / t_j); the rectangle probabilities come from scipy's multivariate
  normal CDF (Genz's algorithm), the root from scipy's brentq. Neither scipy nor statsmodels has
  group-sequential boundaries, so this search is written here (checked against published values in
  tests/test_sequential.py).
- ``holm_sequential(...)``: Holm's step-down across the planned comparisons, each comparison tested
  at its current Holm level with its own group-sequential boundary (the graphical approach of
  Maurer & Bretz 2013, "Multiple testing in group sequential trials using graphical approaches",
  with Holm's equal weights; a rejection passes its alpha to the others, whose boundaries are then
  recomputed for the larger level). Not re-testing earlier looks after such a pass is conservative.
- ``tost(a, b, margin)``: two one-sided Welch t-tests for |mean(a) - mean(b)| < margin (scipy's
  ``ttest_ind(..., alternative=)``); p = the larger one-sided p.

Approximations (stated in the report too): the per-look statistics are Welch t, not z; each is
compared on the p-value scale (its t-distribution p against the nominal level 2(1 - Phi(c_k)) of the
z boundary), which is exact as df grows and close for the >= 8 df of 5 + 5 seeds. The information
fraction of a look is I/I_max with I = 1 / (1/n_a + 1/n_b) from the seed counts and I_max = n_max / 2.
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Sequence

import numpy as np
from scipy import optimize, stats



def obf_spent(t: float, alpha: float) -> float:
    """Alpha spent by information fraction t in (0, 1] (two-sided O'Brien-Fleming-type)."""
    if t <= 0:
        return 0.0
    per_side = alpha / 2  # each side spends 2 - 2 Phi(z_{1 - a/2} / sqrt(t)) of its a = alpha/2
    return float(2 * (2.0 - 2.0 * stats.norm.cdf(stats.norm.ppf(1 - per_side / 2) / math.sqrt(min(t, 1.0)))))


def _no_crossing(cs: Sequence[float], ts: Sequence[float]) -> float:
    """P(|Z_i| < c_i for every look i) for the canonical joint distribution of the looks."""
    if len(cs) == 1:
        return float(1 - 2 * stats.norm.sf(cs[0]))
    ts = np.asarray(ts, dtype=float)
    cov = np.sqrt(np.minimum.outer(ts, ts) / np.maximum.outer(ts, ts))
    mvn = stats.multivariate_normal(mean=np.zeros(len(ts)), cov=cov, seed=12345,  # fixed QMC points
                                    maxpts=50000 * len(ts), abseps=1e-6, releps=0)
    c = np.asarray(cs, dtype=float)
    return float(mvn.cdf(c, lower_limit=-c))


def boundaries(fractions: Sequence[float], alpha: float = 0.05) -> list[float]:
    """Two-sided z boundaries of the Lan-DeMets O'Brien-Fleming design at these information fractions."""
    return list(_boundaries(tuple(round(float(t), 10) for t in fractions), round(float(alpha), 12)))


@lru_cache(maxsize=4096)
def _boundaries(ts: tuple[float, ...], alpha: float) -> tuple[float, ...]:
    if any(b <= a for a, b in zip(ts, ts[1:])) or not all(0 < t <= 1 for t in ts):
        raise ValueError(f"information fractions must increase within (0, 1]: {ts}")
    cs: list[float] = []
    for k, t in enumerate(ts):
        target = 1.0 - obf_spent(t, alpha)  # P(no crossing up to look k)
        if k == 0:
            cs.append(float(stats.norm.isf((1 - target) / 2)))
            continue
        prev = _no_crossing(cs, ts[:k])
        if prev - target <= 1e-12:  # nothing left to spend at this look (rounding): never reject
            cs.append(math.inf)
            continue
        f = lambda c: _no_crossing(cs + [c], ts[: k + 1]) - target  # noqa: E731
        cs.append(float(optimize.brentq(f, 0.5, 12.0, xtol=1e-6)))
    return tuple(cs)


def nominal_p(c: float) -> float:
    """Two-sided nominal p-value level of the z boundary c."""
    return float(2 * stats.norm.sf(c))


def information_fraction(n_a: int, n_b: int, n_max: int) -> float:
    """I/I_max with I = 1/(1/n_a + 1/n_b) and I_max = n_max/2 (both arms at n_max)."""
    return min(1.0, (1.0 / (1.0 / n_a + 1.0 / n_b)) / (n_max / 2.0))


def tost(a: Sequence[float], b: Sequence[float], margin: float) -> float:
    """TOST p-value for H0: |mean(a) - mean(b)| >= margin (Welch, two one-sided scipy t-tests)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2 or len(b) < 2:
        return math.nan
    if a.var(ddof=1) + b.var(ddof=1) == 0:  # degenerate: decided by the means alone
        return 0.0 if abs(a.mean() - b.mean()) < margin else 1.0
    p_low = stats.ttest_ind(a + margin, b, equal_var=False, alternative="greater").pvalue
    p_high = stats.ttest_ind(a - margin, b, equal_var=False, alternative="less").pvalue
    return float(max(p_low, p_high))


def holm_sequential(pvalues: dict[str, float], fractions: dict[str, list[float]], open_: set[str],
                    n_family: int, n_rejected_before: int, alpha: float = 0.05,
                    one_sided: frozenset[str] = frozenset()) -> dict[str, dict]:
    """One look of Holm's step-down with group-sequential boundaries.

    ``pvalues``: this look's nominal p per open hypothesis; ``fractions``: each one's information
    fractions at all its looks so far (this one last); ``n_family``: hypotheses in the family;
    ``n_rejected_before``: rejected at earlier looks. Hypotheses in ``one_sided`` (TOST) use the
    boundary of level 2*alpha_j so that each one-sided test spends alpha_j. Returns per hypothesis
    {rejected, level (Holm's alpha_j), boundary (z), nominal (p level)}.
    """
    rejected = n_rejected_before
    out = {h: {"rejected": False} for h in open_}
    changed = True
    while changed:  # a rejection raises everyone's level: test the rest again at this look
        changed = False
        level = alpha / max(n_family - rejected, 1)
        for h in sorted(open_, key=lambda h: (pvalues.get(h, math.nan), h)):
            if out[h]["rejected"]:
                continue
            c = boundaries(fractions[h], 2 * level if h in one_sided else level)[-1]
            nominal = nominal_p(c) / (2 if h in one_sided else 1)
            p = pvalues.get(h, math.nan)
            out[h].update(level=level, boundary=c, nominal=nominal)
            if not math.isnan(p) and p <= nominal:
                out[h]["rejected"] = True
                rejected += 1
                changed = True
                break  # Holm: recompute the level before testing the next
    return out

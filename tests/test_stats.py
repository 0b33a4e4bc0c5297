"""qsnn.study.stats on constructed inputs whose answers are known (by hand or from scipy directly)."""
import math

import numpy as np
import pytest
from scipy import stats as sps

from qsnn.study.stats import compare_to_baseline, holm, seeds_needed, summarize, welch


def test_summarize_matches_scipy_t_interval():
    x = [0.81, 0.84, 0.79, 0.88, 0.83]
    s = summarize(x)
    mean, sd = sum(x) / 5, math.sqrt(sum((v - sum(x) / 5) ** 2 for v in x) / 4)
    lo, hi = sps.t.interval(0.95, 4, loc=mean, scale=sd / math.sqrt(5))
    assert s["n"] == 5
    assert s["mean"] == pytest.approx(mean) and s["std"] == pytest.approx(sd)
    assert s["sem"] == pytest.approx(sd / math.sqrt(5))
    assert (s["ci_low"], s["ci_high"]) == pytest.approx((lo, hi))
    assert summarize(x, confidence=0.99)["ci_low"] < lo  # wider at higher confidence


def test_summarize_small_and_constant():
    one = summarize([0.7])
    assert one["n"] == 1 and one["mean"] == 0.7 and one["std"] == 0.0
    assert math.isnan(one["ci_low"]) and math.isnan(one["ci_high"])
    const = summarize([0.5, 0.5, 0.5])
    assert (const["ci_low"], const["ci_high"]) == (0.5, 0.5)


def test_welch_identical_groups_give_p_one():
    r = welch([0.9, 0.9, 0.9], [0.9, 0.9, 0.9])
    assert r["p"] == 1.0 and r["diff"] == 0.0
    r = welch([0.8, 0.85, 0.9], [0.8, 0.85, 0.9])  # same values with spread: t=0
    assert r["p"] == pytest.approx(1.0) and r["ci_low"] < 0 < r["ci_high"]


def test_welch_well_separated_groups_and_hand_df():
    a, b = [0.90, 0.91, 0.92, 0.905], [0.50, 0.55, 0.52]
    r = welch(a, b)
    assert r["p"] < 0.01 and r["diff"] > 0 and r["ci_low"] > 0
    # Welch-Satterthwaite df by hand
    va, vb = np.var(a, ddof=1) / 4, np.var(b, ddof=1) / 3
    df = (va + vb) ** 2 / (va ** 2 / 3 + vb ** 2 / 2)
    assert r["df"] == pytest.approx(df)
    half = sps.t.ppf(0.975, df) * math.sqrt(va + vb)
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((r["diff"] - half, r["diff"] + half))
    assert welch(b, a)["diff"] == pytest.approx(-r["diff"])


def test_welch_needs_two_per_group():
    r = welch([0.9], [0.5, 0.6])
    assert r["diff"] == pytest.approx(0.35) and math.isnan(r["p"]) and math.isnan(r["ci_low"])


def test_holm_hand_computed():
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> raised to 0.06 (monotone)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    out = holm([0.01, float("nan"), 0.04, 0.03, 0.005])  # nan stays nan and does not count in m
    assert math.isnan(out[1]) and [out[i] for i in (0, 2, 3, 4)] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == [1.0, 1.0]  # capped
    assert holm([]) == []


def test_seeds_needed_hand_computed():
    # z_0.975 + z_0.8 = 1.959964 + 0.841621 = 2.801585; 2 * 2.801585^2 = 15.70 -> 16
    assert seeds_needed(1.0, 1.0) == 16
    assert seeds_needed(-0.02, 0.04) == 63  # 2 * (2.801585 * 2)^2 = 62.79
    assert seeds_needed(10.0, 1.0) == 2  # floor of 2
    assert seeds_needed(0.0, 1.0) is None and seeds_needed(0.1, float("nan")) is None


def test_compare_to_baseline():
    groups = {"fp32": [0.90, 0.91, 0.92], "bits4": [0.90, 0.915, 0.925], "bits1": [0.40, 0.45, 0.42]}
    rows = compare_to_baseline(groups, "fp32")
    assert [r["setting"] for r in rows] == ["bits4", "bits1"]
    bits4, bits1 = rows
    assert bits1["significant"] and bits1["seeds_needed"] is None and bits1["diff"] < 0
    assert not bits4["significant"] and bits4["seeds_needed"] > 3  # a 0.3-point gap needs many seeds
    assert [r["p_holm"] for r in rows] == pytest.approx(holm([bits4["p"], bits1["p"]]))
    with pytest.raises(KeyError):
        compare_to_baseline(groups, "nope")


def test_seeds_needed_follows_the_holm_verdict():
    # a large but noisy difference, one of several comparisons: not significant after Holm with 3 seeds,
    # so the estimate must exceed 3 and be sized at the Bonferroni level alpha/m (here m = 4)
    groups = {"base": [0.90, 0.92, 0.94], "a": [0.80, 0.90, 0.97], "b": [0.91, 0.92, 0.93],
              "c": [0.90, 0.93, 0.95], "d": [0.89, 0.92, 0.94]}
    rows = {r["setting"]: r for r in compare_to_baseline(groups, "base")}
    a = rows["a"]
    assert not a["significant"] and a["seeds_needed"] >= 4
    from qsnn.study.stats import pooled_sd
    expected = seeds_needed(a["diff"], pooled_sd(groups["a"], groups["base"]), alpha=0.05 / 4)
    assert a["seeds_needed"] == max(expected, 4)


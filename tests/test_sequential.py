"""Group-sequential boundaries, Holm across comparisons and TOST (qsnn.study.group_sequential)."""
from __future__ import annotations

import numpy as np
import pytest

from qsnn.study.group_sequential import boundaries, holm_sequential, information_fraction, nominal_p, obf_spent, tost


# Lan-DeMets O'Brien-Fleming-type spending, two-sided alpha 0.05 (symmetric, alpha/2 = 0.025 per side),
# K equally spaced looks: gsDesign's sfLDOF (alpha=0.025, test.type=2) and rpact's asOF give these
# (e.g. K=5: 4.877, 3.357, 2.680, 2.290, 2.031; also Jennison & Turnbull 2000, ch. 7).
PUBLISHED = {4: [4.333, 2.963, 2.359, 2.014], 5: [4.877, 3.357, 2.680, 2.290, 2.031]}
# The classic O'Brien-Fleming boundaries (Jennison & Turnbull 2000, Table 2.3: C_B(K) sqrt(K/k));
# the spending function approximates them, closely at the final look, loosely at the first.
CLASSIC = {2: [2.797, 1.977], 3: [3.471, 2.454, 2.004]}


@pytest.mark.parametrize("K", sorted(PUBLISHED))
def test_ldof_boundaries_match_published_values(K):
    got = boundaries([k / K for k in range(1, K + 1)], 0.05)
    assert got == pytest.approx(PUBLISHED[K], abs=2e-3)


@pytest.mark.parametrize("K", sorted(CLASSIC))
def test_ldof_approximates_the_classic_obrien_fleming_boundaries(K):
    got = boundaries([k / K for k in range(1, K + 1)], 0.05)
    assert got[-1] == pytest.approx(CLASSIC[K][-1], abs=0.015)  # the final look: within 0.015
    assert all(g >= c - 0.03 for g, c in zip(got, CLASSIC[K]))  # early looks: at least as strict


def test_one_look_is_the_fixed_sample_test_and_spending_ends_at_alpha():
    assert boundaries([1.0], 0.05) == pytest.approx([1.95996], abs=1e-4)
    assert obf_spent(1.0, 0.05) == pytest.approx(0.05)
    assert obf_spent(0.5, 0.05) < 0.01 and obf_spent(0.0, 0.05) == 0.0


def test_information_fraction_from_seed_counts():
    assert information_fraction(5, 5, 20) == pytest.approx(0.25)
    assert information_fraction(20, 20, 20) == 1.0


def test_tost_equivalent_when_close_and_precise_not_when_far():
    rng = np.random.default_rng(0)
    a = 0.90 + 0.001 * rng.standard_normal(10)
    assert tost(a, a + 0.0005, 0.01) < 0.001
    assert tost(a, a + 0.05, 0.01) > 0.5


def test_holm_rejection_raises_the_level_of_the_rest():
    fr = {"x": [1.0], "y": [1.0]}
    # y alone would need p <= 0.025 (alpha/2); once x is rejected, y is tested at 0.05
    r = holm_sequential({"x": 0.001, "y": 0.04}, fr, {"x", "y"}, n_family=2, n_rejected_before=0)
    assert r["x"]["rejected"] and r["y"]["rejected"] and r["y"]["level"] == 0.05
    r = holm_sequential({"x": 0.03, "y": 0.04}, fr, {"x", "y"}, n_family=2, n_rejected_before=0)
    assert not r["x"]["rejected"] and not r["y"]["rejected"]
    assert r["x"]["nominal"] == pytest.approx(nominal_p(boundaries([1.0], 0.025)[0]))

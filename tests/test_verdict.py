"""The verdict in words agrees with its tables (constructed results, no training)."""
from __future__ import annotations

import re

from test_protocol import proto, results

from qsnn.study.protocol import analyze, arm_id
from qsnn.study.verdict import insert_after_title, sentences, tables, verdict_md

NUMBER = re.compile(r"[+-]?\d+(?:\.\d+)?")


def study_result(means, sd, n=20):
    p = proto()
    state = analyze(p, results(means, sd=sd, n=n))
    arms = {arm_id(a): a for a in p.arm_list()}
    best = {a: {"trial": 0, "params": {"optim.lr": "0.005"}, "select": 0.9, "n_ok": 3} for a in arms}
    return {"protocol": p, "state": state, "arms": arms, "best": best, "n_tune_jobs": 12}


def test_every_number_in_the_verdict_is_in_its_tables():
    # resolved differences, an equivalence and open comparisons, so every kind of sentence appears
    res = study_result({"4-constant": 0.80, "4-cosine": 0.945, "32-constant": 0.95, "32-cosine": 0.949}, sd=0.003)
    words = " ".join(sentences(res))
    body = "\n".join(tables(res, wall_s=60.0))
    cells = set(NUMBER.findall(body))
    missing = [x for x in NUMBER.findall(words) if x not in cells]
    assert not missing, f"numbers in the verdict but in no table: {missing}\n{words}"
    assert "better by" in body or "within" in body


def test_verdict_claims_only_what_was_resolved():
    res = study_result({a: 0.9 for a in ("4-constant", "4-cosine", "32-constant", "32-cosine")}, sd=0.01)
    words = " ".join(sentences(res))
    assert "above it none; below it none" in words  # identical arms: no difference claimed
    assert "is not resolved" in words  # no single best arm is claimed


def test_verdict_section_opens_the_report():
    res = study_result({"4-constant": 0.5, "4-cosine": 0.7, "32-constant": 0.98, "32-cosine": 0.85}, sd=0.0005, n=5)
    md = insert_after_title("# Sweep report\n\nSources: x\n", verdict_md(res))
    lines = md.splitlines()
    assert lines[0] == "# Sweep report" and lines[2] == "## Verdict"
    assert "Every planned comparison was resolved." in md

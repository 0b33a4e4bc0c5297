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


def test_nothing_learned_is_said_first_and_nothing_else_is_concluded():
    res = study_result({a: 0.101 for a in ("4-constant", "4-cosine", "32-constant", "32-cosine")}, sd=0.002)
    res["chance"] = 0.1
    words = sentences(res)
    assert words[0].startswith("Nothing was learned: every arm is at chance level (10% on 10 classes)")
    assert len(words) == 1 and "best arm" not in words[0] and "raise trainer.max_epochs" in words[0]
    assert all("*(chance)*" in line for line in tables(res, None) if line.startswith("| 4-") or line.startswith("| 32-"))


def test_an_arm_at_chance_enters_no_best_arm_or_gap_conclusion():
    res = study_result({"4-constant": 0.10, "4-cosine": 0.93, "32-constant": 0.95, "32-cosine": 0.949}, sd=0.003)
    res["chance"] = 0.1
    words = " ".join(sentences(res))
    assert words.startswith("Nothing was learned by 4-constant: at chance level")
    assert "best arm is 4-cosine" in words and "for constant:" not in words  # the constant gap has a chance side


def test_every_trials_score_is_in_the_arms_table_and_tie_breaks_are_counted():
    res = study_result({"4-constant": 0.80, "4-cosine": 0.945, "32-constant": 0.95, "32-cosine": 0.949}, sd=0.003)
    for b in res["best"].values():
        b.update(trial=2, scores={0: (1.0, 0.31), 1: (0.99, 0.2), 2: (1.0, 0.25)}, by_tie_break=True)
    body = "\n".join(tables(res, None))
    assert "0: 100.0 / 0.3100, 1: 99.0 / 0.2000, **2: 100.0 / 0.2500**" in body
    assert "the tie-break decided 4 of 4 arms' choice" in body

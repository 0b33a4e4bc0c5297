"""The study's answer in words: the ``## Verdict`` section and the protocol tables of report.md.

Every number in a verdict sentence is formatted by the same helper as its table cell (``acc``,
``pp``, ``ci``), from the same value, so the sentence and the table agree digit for digit (tested).
A sentence states only what its test decided: a difference only when the comparison rejected its
null, "within the margin" only when the TOST rejected, and otherwise "unresolved" with the seeds.
An arm whose mean test accuracy is at chance level (the report's rule, ``report_tables.at_chance``)
learned nothing: the verdict says so first, and draws no best-arm or bit-gap conclusion from it.
"""
from __future__ import annotations

import math
from pathlib import Path

from qsnn.study.report import make_report
from qsnn.study.report_html import write_html
from qsnn.study.report_tables import at_chance
from qsnn.study.stats import summarize

KIND = {"base": "vs baseline", "gap": "bit gap (diff)", "eq": "bit gap (TOST)", "top": "best vs runner-up"}


def acc(x: float) -> str:
    return "-" if x is None or math.isnan(x) else f"{100 * x:.1f}"


def pp(x: float) -> str:
    return "-" if x is None or math.isnan(x) else f"{100 * x:+.2f}"


def ci(lo: float, hi: float) -> str:
    return f"[{pp(lo)}, {pp(hi)}]"


def decision(st: dict, margin: float, n_max: int) -> str:
    """The comparison's outcome in words (one table cell; the verdict reuses it)."""
    if st["status"] == "rejected" and st["kind"] == "eq":
        return f"within {100 * margin:g} pt"
    if st["status"] == "rejected":
        return f"{'a' if st['diff'] > 0 else 'b'} better by {pp(abs(st['diff']))[1:]} pt"
    if st["status"] == "closed":
        return "(decided by its pair)"
    return f"unresolved at n={min(st.get('n_a', 0), st.get('n_b', 0))}" + (" (n_max)" if st.get("n_a") == n_max else "")


# ----------------------------------------------------------------------------- tables
def arm_rows(result: dict) -> list[dict]:
    p, state, arms, best = result["protocol"], result["state"], result["arms"], result["best"]
    rows = []
    for aid, arm in arms.items():
        vals = state.get("values", {}).get(aid, [])
        s = summarize(vals)
        rows.append({"arm": aid, **arm, "params": best[aid]["params"], "trial": best[aid]["trial"],
                     "val": best[aid]["select"], "scores": best[aid].get("scores", {}),
                     "n": len(vals), "mean": s["mean"], "lo": s["ci_low"], "hi": s["ci_high"],
                     "chance": at_chance(s["mean"], result.get("chance"))})
    return rows


def trial_scores(r: dict) -> str:
    """Every tuning trial's validation scores, ``trial: select% / tie-break``, the chosen one in bold:
    a tie or a near-tie is visible in the table."""
    cells = []
    for i, (v, tie) in sorted(r["scores"].items()):
        cell = f"{i}: {acc(v)}" + (f" / {tie:.4f}" if not math.isnan(tie) else "")
        cells.append(f"**{cell}**" if i == r["trial"] else cell)
    return ", ".join(cells) or "-"


def tables(result: dict, wall_s: float | None) -> list[str]:
    p, state = result["protocol"], result["state"]
    rows = arm_rows(result)
    L = ["## Protocol", "",
         f"{len(result['arms'])} arms ({' x '.join(f'{k} {{{chr(44).join(v)}}}' for k, v in p.arms.items())}); "
         f"baseline {', '.join(f'{k}={v}' for k, v in p.baseline.items())}.  ",
         f"Tune: {p.trials} trials per arm (fixed random search, the same draws for every arm), selected on "
         f"{p.select}" + (f", trials tied on it ranked by the lowest {p.tie_break} ({tie_decided(result)})"
                           if p.tie_break else "") + f" (tuning seeds {p.seed_offset}+). Confirm: fresh seeds 1..n, looks at "
         f"{', '.join(map(str, p.seeds))} seeds per arm; {p.metric} only.  ",
         f"Planned comparisons: {state.get('family', '-')} hypotheses, Holm across them (alpha {p.alpha:g}) with "
         f"Lan-DeMets O'Brien-Fleming boundaries across looks; bit-gap equivalence margin {100 * p.margin:g} pt (TOST).  ",
         f"Jobs run: {result.get('n_tune_jobs', '-')} tuning + {sum(r['n'] for r in rows)} confirmation"
         + (f"; wall time of this invocation {wall_s / 60:.1f} min." if wall_s else "."), "",
         "The verdict rests on the sequential tests of this section. The per-setting tables further down are "
         "the plain sweep report of the same confirmation jobs (fixed-sample Welch/Holm, no look correction).", ""]
    L += ["## Arms (confirmation seeds, test accuracy %)", "",
          f"Tuning trials: {p.select} %" + (f" / {p.tie_break}" if p.tie_break else "") + " of each trial, the chosen "
          "one in bold. *(chance)*: the arm's mean test accuracy is at chance level.", "",
          "| arm | best trial | tuned | tuning trials | seeds | test acc | 95% CI |", "|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: -r["mean"] if not math.isnan(r["mean"]) else 0):
        tuned = " ".join(f"{k}={v}" for k, v in r["params"].items())
        L.append(f"| {r['arm']} | {r['trial']} | {tuned} | {trial_scores(r)} | {r['n']} | {acc(r['mean'])}"
                 f"{' *(chance)*' if r['chance'] else ''} | [{acc(r['lo'])}, {acc(r['hi'])}] |")
    L += ["", "## Planned comparisons (test accuracy, a minus b, points)", "",
          "| comparison | kind | a | b | n (a/b) | diff | 95% CI | p | boundary p | look | outcome |",
          "|---|---|---|---|---|---|---|---|---|---|---|"]
    for h, st in state["hyps"].items():
        L.append(f"| {h} | {KIND[st['kind']]} | {st.get('a', '-')} | {st.get('b', '-')} | {st.get('n_a', '-')}/"
                 f"{st.get('n_b', '-')} | {pp(st.get('diff', math.nan))} | {ci(st.get('ci_low', math.nan), st.get('ci_high', math.nan))} | "
                 f"{_p(st.get('p'))} | {_p(st.get('nominal'))} | {st.get('look', '-')} | {decision(st, p.margin, p.n_max)} |")
    return L


def tie_decided(result: dict) -> str:
    best = result["best"]
    n = sum(bool(b.get("by_tie_break")) for b in best.values())
    return f"the tie-break decided {n} of {len(best)} arms' choice"


def _p(x) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2g}"


# ----------------------------------------------------------------------------- words
def sentences(result: dict) -> list[str]:
    p, hyps = result["protocol"], result["state"]["hyps"]
    rows = {r["arm"]: r for r in arm_rows(result)}
    chance = sorted(a for a, r in rows.items() if r["chance"])
    if chance and len(chance) == len(rows):
        k = round(1 / result["chance"])
        return [f"Nothing was learned: every arm is at chance level ({100 / k:.0f}% on {k} classes), so no "
                "arm, gap or baseline comparison says anything about the choices; raise trainer.max_epochs or the "
                "batches per epoch (trainer.limit_train_batches) and run the study again in a new dir."]
    out = [f"Nothing was learned by {', '.join(chance)}: at chance level, they enter no best-arm or bit-gap "
           "conclusion below."] if chance else []
    rows = {a: r for a, r in rows.items() if not r["chance"]}
    bk = p.bits_key if p.bits_key in p.arms else None
    for b in (p.arms[bk] if bk else ["all"]):
        top = hyps.get(f"top:{b}")
        cand = [r for r in rows.values() if (r.get(bk) == b if bk else True) and not math.isnan(r["mean"])]
        if not cand:
            continue
        best = max(cand, key=lambda r: r["mean"])
        s = (f"{'At ' + b + ' bits' if bk else 'Overall'} the best arm is {best['arm']} at {acc(best['mean'])}% "
             f"test accuracy ({best['n']} seeds)")
        if top and top["status"] == "rejected":
            s += f"; it beats the runner-up {top['b']} by {pp(top['diff'])} points {ci(top['ci_low'], top['ci_high'])}."
        elif top:
            s += (f"; its lead over the runner-up {top['b']} ({pp(top['diff'])} points "
                  f"{ci(top['ci_low'], top['ci_high'])}) is not resolved, so it is not shown to be the single best.")
        else:
            s += "."
        out.append(s)
    gaps = [(h.split(":", 1)[1], st, hyps.get("eq:" + h.split(":", 1)[1])) for h, st in hyps.items()
            if st["kind"] == "gap" and st.get("a") in rows and st.get("b") in rows]
    if gaps:
        name, g, eq = min(gaps, key=lambda x: abs(x[1]["diff"]) if not math.isnan(x[1]["diff"]) else math.inf)
        if eq and eq["status"] == "rejected":
            what = f"{p.arms[bk][0]}-bit is within {100 * p.margin:g} point of {p.arms[bk][-1]}-bit (TOST)"
        elif g["status"] == "rejected":
            what = f"{'full precision' if g['diff'] > 0 else 'low precision'} is better by {pp(abs(g['diff']))[1:]} points"
        else:
            what = f"neither a difference nor equivalence within {100 * p.margin:g} point is resolved at {g['n_a']} seeds"
        out.append(f"The smallest full- vs low-bit gap is {pp(g['diff'])} points {ci(g['ci_low'], g['ci_high'])} "
                   f"for {name}: {what}.")
        within = [n for n, g2, e in gaps if e and e["status"] == "rejected"]
        diff = [n for n, g2, e in gaps if g2["status"] == "rejected"]
        open_ = [n for n, g2, e in gaps if g2["status"] != "rejected" and not (e and e["status"] == "rejected")]
        out.append(f"Of {len(gaps)} bit gaps, {len(within)} are within the margin ({', '.join(within) or 'none'}), "
                   f"{len(diff)} differ ({', '.join(diff) or 'none'}) and {len(open_)} stay unresolved.")
    base = [(st["a"], st) for h, st in hyps.items() if st["kind"] == "base" and st["b"] in rows and st["a"] in rows]
    above = [f"{a} ({pp(st['diff'])})" for a, st in base if st["status"] == "rejected" and st["diff"] > 0]
    below = [f"{a} ({pp(st['diff'])})" for a, st in base if st["status"] == "rejected" and st["diff"] < 0]
    if base:
        ref = base[0][1]["b"]
        out.append(f"Against the baseline {ref}, resolved: above it {', '.join(above) or 'none'}; below it "
                   f"{', '.join(below) or 'none'}; {len(base) - len(above) - len(below)} arms are not distinguishable "
                   f"from it at the seeds they got.")
    unresolved = [h for h, st in hyps.items() if st["status"] == "unresolved"]
    if unresolved:
        out.append(f"Unresolved after the last look: {len(unresolved)} of {len(hyps)} comparisons "
                   f"({', '.join(unresolved[:6])}{', ...' if len(unresolved) > 6 else ''}): their differences are "
                   f"within the seed noise at {p.n_max} seeds per arm (see the table).")
    else:
        out.append("Every planned comparison was resolved.")
    return out


def verdict_md(result: dict) -> list[str]:
    return ["## Verdict", ""] + [" ".join(sentences(result))] + [""]


def insert_after_title(md: str, section: list[str]) -> str:
    lines = md.splitlines()
    i = 1 if lines and lines[0].startswith("# ") else 0
    return "\n".join(lines[:i] + [""] + section + lines[i:]) + "\n"


def write_study_report(result: dict, out: Path, wall_s: float | None = None) -> Path:
    """report.md of the confirmation jobs (qsnn.study.report) with the verdict and protocol tables on top."""
    p = result["protocol"]
    result["n_tune_jobs"] = p.trials * len(p.arm_list())
    rep = make_report([out / "confirm"], out=out, by_keys=list(p.arms), baseline=p.baseline)
    result["chance"] = rep["chance"]
    md = insert_after_title(rep["md"].read_text(), verdict_md(result) + tables(result, wall_s) + [""])
    rep["md"].write_text(md)
    write_html(md, rep["html"], title=f"Study report: {out.name}")  # the page is report.md, verdict first
    return rep["md"]


"""The sweep report as text: ``report.md`` (one section per block, the title first) and ``report.csv``."""
from __future__ import annotations

import csv
import math
from pathlib import Path

from qsnn.study.report_load import NAN, bits_key
from qsnn.study.report_tables import CHANCE_MARGIN


def pct(x: float, digits: int = 1) -> str:
    return "-" if x is None or math.isnan(x) else f"{100 * x:.{digits}f}"


def mean_std_ci(r: dict, prefix: str) -> str:
    m, s, lo, hi = (r[f"{prefix}_{k}"] for k in ("mean", "std", "ci_low", "ci_high"))
    if math.isnan(m):
        return "-"
    if math.isnan(lo):  # one seed: no spread to report
        return f"{pct(m)} (1 seed)"
    return f"{pct(m)} ± {pct(s)} [{pct(lo)}, {pct(hi)}]"


def write_csv(rows: list[dict], path: Path) -> None:
    cols = [c for c in rows[0] if not c.startswith("_")] if rows else ["setting"]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({c: (f"{r[c]:.6g}" if isinstance(r[c], float) else r[c]) for c in cols})


def _num(x: float, fmt: str) -> str:
    return "-" if x is None or math.isnan(x) else format(x, fmt)


# Cost columns of the markdown table (report.csv has every cost/* mean): key, header, format.
MD_COSTS = (("cost/footprint_bytes", "footprint (B)", ",.0f"), ("cost/synops", "synops/sample", ",.0f"))


def md_header(runs, rows, keys, target, sources, chance=None) -> str:
    n_failed = sum(r.get("status") != "ok" for r in runs)
    n_bad = sum(r.get("status") in ("unreadable", "no metrics") for r in runs)  # qsnn.study.report_load.read_summary
    chance_txt = (f" Dashed lines in the plots: chance ({pct(chance)}% = 1/{round(1 / chance)} classes); "
                  f"*(chance)* marks a mean test accuracy at chance level (less than {pct(CHANCE_MARGIN, 0)}% "
                  "of the way from chance to 100%).") if chance else ""
    return "\n".join([
        f"Sources: {', '.join(map(str, sources))}  ",
        f"{len(runs)} jobs, {len(runs) - n_failed} ok, {n_failed - n_bad} failed"
        + (f", {n_bad} unreadable or without metrics" if n_bad else "") + f"; {len(rows)} settings "
        f"(grouped by {', '.join(keys) or 'nothing: one setting'}).  ",
        "Accuracies in %, mean ± std [95% t-CI, clipped to [0, 100]] over seeds (the mean cannot leave [0, 100], "
        "so clipping keeps the coverage; a bootstrap percentile CI would be far too narrow at 2-3 seeds); "
        "**bold** = best mean test acc "
        f"for its bit-width; epochs to {pct(target, 0)}% val acc are averaged over the seeds that reached it."
        + chance_txt])


def md_table(rows, keys, target) -> str:
    costs = [c for c in MD_COSTS if any(f"{c[0].replace('/', '_')}_mean" in r for r in rows)]
    head = keys + ["val acc best", "test acc", f"epochs to {pct(target, 0)}%", "final rate"] \
        + [c[1] for c in costs] + ["ok", "failed"]
    L = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        test = mean_std_ci(r, "test_acc") + (" *(chance)*" if r.get("at_chance") else "")
        cells = [str(r.get(k, "")) for k in keys] + [
            mean_std_ci(r, "val_acc_best"), test,
            f"{_num(r['epochs_to_target_mean'], '.1f')} ({r['epochs_to_target_reached']})",
            _num(r["final_rate_mean"], ".3f")] \
            + [_num(r.get(f"{k.replace('/', '_')}_mean", NAN), fmt) for k, _, fmt in costs] \
            + [str(r["n_ok"]), str(r["n_failed"])]
        if r.get("best"):
            cells = [f"**{c}**" for c in cells]
        L.append("| " + " | ".join(cells) + " |")
    return "\n".join(L)


def md_gaps(gaps, keys, by) -> str:
    if not gaps:
        return ""
    g0 = gaps[0]
    rest = ", ".join(k for k in keys if k not in (bits_key(keys), by))
    L = [f"## {g0['hi']}-bit minus {g0['lo']}-bit test accuracy", "",
         f"| {by or 'all'} | {rest or '-'} | gap (pp) | 95% CI | Welch p | n ({g0['hi']}/{g0['lo']}) | note |",
         "|---|---|---|---|---|---|---|"]
    for g in gaps:
        gap = f"*{pct(g['gap'], 2)}*" if g.get("both_chance") else pct(g["gap"], 2)
        L.append(f"| {g['by']} | {g['rest'] or '-'} | {gap} | [{pct(g['ci_low'], 2)}, {pct(g['ci_high'], 2)}] | "
                 f"{g['p']:.3g} | {g['n_hi']}/{g['n_lo']} | {g.get('note') or ''} |")
    return "\n".join(L)


def md_comparisons(comps, baseline, keys) -> str:
    if not comps:
        return ("No baseline comparison: no single setting with >= 2 ok seeds matches the baseline "
                "(pass --baseline key=value,...).") if keys else ""
    L = [f"## Against the baseline `{baseline}` (test acc)", "",
         "Welch's t-test per setting, Holm-adjusted across all comparisons (alpha 0.05). "
         "*noise* = not distinguishable from seed noise; *seeds needed* = rough seeds per setting "
         "to resolve a difference of the observed size (80% power).", "",
         "| setting | diff (pp) | 95% CI | p | p (Holm) | verdict | seeds needed |", "|---|---|---|---|---|---|---|"]
    for c in sorted(comps, key=lambda c: -c["diff"] if not math.isnan(c["diff"]) else 0):
        verdict = "**significant**" if c["significant"] else "noise"
        L.append(f"| {c['setting']} | {pct(c['diff'], 2)} | [{pct(c['ci_low'], 2)}, {pct(c['ci_high'], 2)}] | "
                 f"{c['p']:.3g} | {c['p_holm']:.3g} | {verdict} | {c['seeds_needed'] or '-'} |")
    return "\n".join(L)


def md_failed(runs) -> str:
    failed = [r for r in runs if r.get("status") != "ok"]
    if not failed:
        return ""
    L = [f"## Failed jobs ({len(failed)})", "", "| job dir | overrides | error |", "|---|---|---|"]
    for r in failed:
        err = (r.get("error") or r.get("status") or "").replace("|", "\\|")
        L.append(f"| {r['dir']} | {' '.join(r.get('overrides') or [])} | {err} |")
    return "\n".join(L)


def md_sections(runs, rows, keys, gaps, comps, baseline, target, by, plots, sources, chance=None) -> list[str]:
    """report.md as a list of sections (markdown blocks), the title first: insert new ones here."""
    return [s for s in (
        "# Sweep report",
        md_header(runs, rows, keys, target, sources, chance),
        md_table(rows, keys, target),
        md_gaps(gaps, keys, by),
        md_comparisons(comps, baseline, keys),
        md_failed(runs),
        "## Plots\n\n" + "\n".join(f"![{p.stem}]({p.name})" for p in plots) if plots else "",
    ) if s]


def render_md(runs, rows, keys, gaps, comps, baseline, target, by, plots, sources, chance=None) -> str:
    return "\n\n".join(md_sections(runs, rows, keys, gaps, comps, baseline, target, by, plots, sources, chance)) + "\n"

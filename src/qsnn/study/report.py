"""Sweep report: read every job's ``summary.json`` under one or more multirun dirs
(``report_load``), group the jobs into settings (what varies across jobs, seed excluded) and
compute their numbers (``report_tables``), and write ``report.md`` and ``report.csv``
(``report_text``), PNG plots (``report_plots``) and a self-contained ``report.html``
(``report_html``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from qsnn.errors import ReportInputError
from qsnn.study.report_html import write_html
from qsnn.study.report_load import chance_of, infer_keys, load_runs
from qsnn.study.report_plots import plot_all
from qsnn.study.report_tables import bit_gap, comparisons, find_baseline, mark_best, plot_key, summarize_settings
from qsnn.study.report_text import render_md, write_csv


def make_report(dirs: list[str | Path], out: str | Path | None = None, by_keys: list[str] | None = None,
                baseline: dict[str, str] | None = None, target: float = 0.8, plot_by: str | None = None,
                runs: list[dict] | None = None, plots: bool = True) -> dict[str, Any]:
    """Write report.md/report.csv/PNGs and a self-contained report.html into ``out`` (default: the
    first dir). Returns what it wrote."""
    runs = load_runs(dirs) if runs is None else runs
    if not runs:
        raise FileNotFoundError(f"no summary.json under {', '.join(map(str, dirs))}: is this a multirun dir?")
    out = Path(out or dirs[0])
    out.mkdir(parents=True, exist_ok=True)
    keys = by_keys or infer_keys(runs)
    unknown = [k for k in by_keys or [] if not any(k in r["params"] for r in runs)]
    if unknown:
        known = sorted({k for r in runs for k in r["params"]})
        raise ReportInputError(f"--by {unknown[0]}: no job has this key (keys: {', '.join(known)})")
    by = plot_key(keys, plot_by)
    chance = chance_of([r for r in runs if r.get("status") == "ok"])
    rows = summarize_settings(runs, keys, target)
    mark_best(rows, keys)
    gaps = bit_gap(runs, keys, by)
    base = find_baseline(rows, keys, baseline)
    comps = comparisons(rows, base)
    pngs = plot_all(runs, rows, keys, gaps, by, out, chance=chance) if plots else []
    write_csv(rows, out / "report.csv")
    md = render_md(runs, rows, keys, gaps, comps, base, target, by, pngs, dirs, chance)
    (out / "report.md").write_text(md)
    html = write_html(md, out / "report.html", title=f"Sweep report: {out.name}")
    return {"rows": rows, "keys": keys, "gaps": gaps, "comparisons": comps, "baseline": base,
            "plots": pngs, "md": out / "report.md", "csv": out / "report.csv", "html": html, "runs": runs,
            "by": by, "chance": chance}

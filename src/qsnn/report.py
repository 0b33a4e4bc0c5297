"""Sweep report: read every job's ``summary.json`` under one or more multirun dirs, group the jobs
into settings (what varies across jobs, seed excluded), and write ``report.md``, ``report.csv``,
PNG plots (``qsnn.report_plots``) and a self-contained ``report.html`` (``qsnn.report_html``).
Statistics over seeds come from ``qsnn.stats``; this module only loads, groups and formats.
"""
from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path
from typing import Any, Iterable

from qsnn import stats

NAN = float("nan")
# Never grouping keys: the seed is what we average over; paths and hydra keys only say where.
IGNORED_PREFIXES = ("seed", "hydra.", "paths.", "data.seed", "print_config", "callbacks.progress_bar")
DEFAULT_BASELINE = {"quant.bits": "32", "sched": "constant", "surrogate": "fast_sigmoid"}
# A mean test accuracy less than this fraction of the way from chance (1/num_classes) to 100%
# counts as chance level (10 classes: below 19%; 2 classes: below 55%).
CHANCE_MARGIN = 0.1


class ReportInputError(ValueError):
    """A report option that does not fit the jobs (one line for the user)."""


# ----------------------------------------------------------------------------- loading
def load_runs(dirs: Iterable[str | Path]) -> list[dict[str, Any]]:
    """All job summaries under ``dirs`` (searched recursively), each with ``params``: the job's
    group choices updated by its overrides (``key -> value`` strings)."""
    runs = []
    for d in dirs:
        for path in sorted(Path(d).rglob("summary.json"), key=natural):
            try:
                s = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError) as e:  # a half-written file must not sink the report
                s = {"status": "failed", "error": f"unreadable summary.json: {e}", "overrides": []}
            if not isinstance(s, dict):  # e.g. a file holding just `null`
                s = {"status": "failed", "error": f"summary.json holds {json.dumps(s)[:40]}, not a job summary",
                     "overrides": []}
            s["dir"] = str(path.parent)
            s["params"] = params_of(s)
            runs.append(s)
        runs += unfinished_jobs(Path(d), {r["dir"] for r in runs})
    return runs


def unfinished_jobs(root: Path, seen: set[str]) -> list[dict[str, Any]]:
    """Hydra job dirs without summary.json (rejected before training, killed, crashed hard): failed,
    with the overrides Hydra saved and the job log's 'job failed:' line when there is one."""
    import yaml

    out = []
    for ov in sorted(root.rglob(".hydra/overrides.yaml"), key=natural):
        job = ov.parent.parent
        if str(job) in seen or (job / "summary.json").exists() or not (job / ".hydra" / "hydra.yaml").exists():
            continue
        if root == job and any(root.glob("*/.hydra")):  # a multirun root is not itself a job
            continue
        overrides = [str(o) for o in (yaml.safe_load(ov.read_text()) or [])]
        error = "no summary.json: still running, killed, or crashed before writing it"
        for log in job.glob("*.log"):
            lines = [ln for ln in log.read_text(errors="replace").splitlines() if "job failed:" in ln]
            if lines:
                error = lines[-1].split("job failed:", 1)[1].strip().replace("\x1b[0m", "")
        hydra_cfg = (yaml.safe_load((job / ".hydra" / "hydra.yaml").read_text()) or {}).get("hydra", {})
        choices = {k: v for k, v in (hydra_cfg.get("runtime", {}).get("choices") or {}).items()
                   if not k.startswith("hydra/") and v is not None}
        s = {"status": "failed", "error": error, "overrides": overrides, "choices": choices, "dir": str(job)}
        s["seed"] = next((o.split("=", 1)[1] for o in overrides if o.startswith("seed=")), None)
        s["params"] = params_of(s)
        out.append(s)
    return out


def natural(path: Path) -> list:
    """Sort key putting job 2 before job 10 (rows then follow the grid's order)."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def params_of(summary: dict) -> dict[str, str]:
    params = {k: str(v) for k, v in (summary.get("choices") or {}).items()}
    for o in summary.get("overrides") or []:
        if "=" in o:
            k, v = o.split("=", 1)
            params[k.lstrip("+~")] = v
    return params


def infer_keys(runs: list[dict]) -> list[str]:
    """Keys whose value differs across runs, in the order they first appear (overrides first)."""
    order: list[str] = []
    for r in runs:
        for o in r.get("overrides") or []:
            k = o.split("=", 1)[0].lstrip("+~")
            if k not in order:
                order.append(k)
        for k in r["params"]:
            if k not in order:
                order.append(k)
    keys = []
    for k in order:
        if k.startswith(IGNORED_PREFIXES):
            continue
        if len({r["params"][k] for r in runs if k in r["params"]}) > 1:
            keys.append(k)
    # a group choice and an override of the same thing (sched vs sched=...) are one key already
    return keys


def setting_name(params: dict, keys: list[str]) -> str:
    return ",".join(f"{k}={params.get(k, '-')}" for k in keys) or "all"


# ----------------------------------------------------------------------------- per-run numbers
def metric(run: dict, name: str) -> float:
    v = (run.get("metrics") or {}).get(name)
    try:
        return float(v)
    except (TypeError, ValueError):
        return NAN


def epochs_to(run: dict, target: float, key: str = "val/acc") -> int | None:
    """1-based number of epochs until ``key`` first reaches ``target`` (None: never)."""
    for i, e in enumerate(run.get("epochs") or []):
        if e.get(key, -1.0) >= target:
            return i + 1
    return None


def final_rate(run: dict) -> float:
    """Mean firing rate over layers at the end (test, else val, else train metrics)."""
    m = run.get("metrics") or {}
    for split in ("test", "val", "train"):
        rates = [float(v) for k, v in m.items() if k.startswith(f"{split}/rate_layer")]
        if rates:
            return sum(rates) / len(rates)
    return NAN


def chance_of(runs: list[dict]) -> float | None:
    """1 / num_classes shared by ``runs`` (from summary.json); None when unknown or mixed."""
    ks = {r.get("num_classes") for r in runs if isinstance(r.get("num_classes"), int) and r["num_classes"] > 1}
    return 1.0 / ks.pop() if len(ks) == 1 else None


def cost_keys(runs: list[dict]) -> list[str]:
    """The ``cost/*`` metrics any run has, in first-seen order."""
    return list(dict.fromkeys(k for r in runs for k in (r.get("metrics") or {}) if k.startswith("cost/")))


def _finite(xs: Iterable[float]) -> list[float]:
    return [x for x in xs if x is not None and not math.isnan(x)]


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else NAN


# ----------------------------------------------------------------------------- aggregation
def acc_summary(values: list[float]) -> dict:
    """``stats.summarize`` with the t-CI clipped to [0, 1].

    Why clip rather than bootstrap: an accuracy's mean cannot lie outside [0, 1], so cutting the
    t-interval there removes only impossible values and keeps its coverage. A bootstrap percentile
    CI (scipy.stats.bootstrap) also stays inside, but with the 2-3 seeds of a sweep it is far too
    narrow: with 2 seeds it is just [min, max] of the two, which covers the mean half the time.
    """
    s = stats.summarize(values)
    for k in ("ci_low", "ci_high"):
        if not math.isnan(s[k]):
            s[k] = min(1.0, max(0.0, s[k]))
    return s


def at_chance(mean: float, chance: float | None, margin: float = CHANCE_MARGIN) -> bool:
    """Chance level: the mean less than ``margin`` of the way from chance to 100% (a net that
    predicts the most frequent class sits a little above 1/K). Judged on the mean, not the CI:
    with 2 seeds a t-CI reaches chance even for a 90% mean, and that net did learn."""
    if chance is None or math.isnan(mean):
        return False
    return mean < chance + margin * (1 - chance)


def summarize_settings(runs: list[dict], keys: list[str], target: float) -> list[dict]:
    """One row per setting, in first-seen order."""
    groups: dict[str, list[dict]] = {}
    for r in runs:
        groups.setdefault(setting_name(r["params"], keys), []).append(r)
    costs = cost_keys(runs)
    rows = []
    for name, rs in groups.items():
        ok = [r for r in rs if r.get("status") == "ok"]
        test_values = _finite(metric(r, "test/acc") for r in ok)
        val = acc_summary(_finite(metric(r, "val/acc_best") for r in ok))
        test = acc_summary(test_values)
        reached = [n for n in (epochs_to(r, target) for r in ok) if n is not None]
        row = {"setting": name, **{k: rs[0]["params"].get(k, "") for k in keys},
               "n_ok": len(ok), "n_failed": len(rs) - len(ok), "seeds": " ".join(str(r.get("seed")) for r in ok)}
        for prefix, s in (("val_acc_best", val), ("test_acc", test)):
            row.update({f"{prefix}_mean": s["mean"], f"{prefix}_std": s["std"],
                        f"{prefix}_ci_low": s["ci_low"], f"{prefix}_ci_high": s["ci_high"]})
        row["epochs_to_target_mean"] = _mean(reached)
        row["epochs_to_target_reached"] = f"{len(reached)}/{len(ok)}"
        row["final_rate_mean"] = _mean(_finite(final_rate(r) for r in ok))
        row["chance"] = chance_of(ok or rs)
        row["at_chance"] = at_chance(test["mean"], row["chance"])
        for k in costs:
            row[f"{k.replace('/', '_')}_mean"] = _mean(_finite(metric(r, k) for r in ok))
        row["_test_values"] = test_values
        rows.append(row)
    return rows


def bits_key(keys: list[str]) -> str | None:
    return next((k for k in keys if k.split(".")[-1] == "bits"), None)


def mark_best(rows: list[dict], keys: list[str]) -> None:
    """row['best'] = True for the highest mean test acc per bit-width (overall when bits don't vary)."""
    bk = bits_key(keys)
    by: dict[str, list[dict]] = {}
    for r in rows:
        r["best"] = False
        if r["n_ok"]:
            by.setdefault(r.get(bk, "") if bk else "", []).append(r)
    for rs in by.values():
        max(rs, key=lambda r: r["test_acc_mean"] if not math.isnan(r["test_acc_mean"]) else -1)["best"] = True


def bit_gap(runs: list[dict], keys: list[str], by: str | None) -> list[dict]:
    """Full-precision minus lowest-bit test acc for each combination of the other keys (``by``
    first), Welch CI over seeds. Pooling over e.g. surrogates would mix in their differences.
    ``note`` says when a side sits at chance level: a gap between two nets that learned nothing
    is not a quantization effect."""
    bk = bits_key(keys)
    if not bk:
        return []
    ok = [r for r in runs if r.get("status") == "ok"]
    widths = sorted({int(r["params"][bk]) for r in ok if r["params"].get(bk, "").isdigit()})
    if len(widths) < 2:
        return []
    hi, lo = str(widths[-1]), str(widths[0])
    others = ([by] if by in keys else []) + [k for k in keys if k not in (bk, by)]
    out = []
    for combo in dict.fromkeys(tuple(r["params"].get(k, "") for k in others) for r in ok):
        sel = [r for r in ok if tuple(r["params"].get(k, "") for k in others) == combo]
        side = {b: [r for r in sel if r["params"].get(bk) == b] for b in (hi, lo)}
        a, b = (_finite(metric(r, "test/acc") for r in side[w]) for w in (hi, lo))
        if a and b:
            w = stats.welch(a, b)
            chance = {k: at_chance(sum(v) / len(v), chance_of(side[k])) for k, v in ((hi, a), (lo, b))}
            note = ("both at chance level: not a meaningful gap" if all(chance.values())
                    else "".join(f"{k}-bit at chance level" for k, c in chance.items() if c))
            out.append({"by": combo[0] if combo else "all", "rest": ",".join(combo[1:]), "hi": hi, "lo": lo,
                        "gap": w["diff"], "ci_low": w["ci_low"], "ci_high": w["ci_high"], "p": w["p"],
                        "n_hi": len(a), "n_lo": len(b), "both_chance": all(chance.values()), "note": note})
    return out


def find_baseline(rows: list[dict], keys: list[str], spec: dict[str, str] | None) -> str | None:
    """The setting matching ``spec`` on the keys that vary (default: 32-bit, constant, fast_sigmoid)."""
    spec = {k: v for k, v in (spec or DEFAULT_BASELINE).items() if k in keys}
    if not spec:
        return None
    hits = [r["setting"] for r in rows if r["n_ok"] >= 2 and all(r.get(k) == v for k, v in spec.items())]
    return hits[0] if len(hits) == 1 else None


def comparisons(rows: list[dict], baseline: str | None, alpha: float = 0.05) -> list[dict]:
    if baseline is None:
        return []
    groups = {r["setting"]: r["_test_values"] for r in rows if len(r["_test_values"]) >= 1}
    return stats.compare_to_baseline(groups, baseline, alpha=alpha)


def plot_key(keys: list[str], plot_by: str | None = None) -> str | None:
    """The key drawn as lines / heatmap columns: ``plot_by``, else sched when it varies, else the
    first varying key that is not the bit-width."""
    return plot_by or ("sched" if "sched" in keys else next((k for k in keys if k != bits_key(keys)), None))


# ----------------------------------------------------------------------------- output
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
    chance_txt = (f" Dashed lines in the plots: chance ({pct(chance)}% = 1/{round(1 / chance)} classes); "
                  f"*(chance)* marks a mean test accuracy at chance level (less than {pct(CHANCE_MARGIN, 0)}% "
                  "of the way from chance to 100%).") if chance else ""
    return "\n".join([
        f"Sources: {', '.join(map(str, sources))}  ",
        f"{len(runs)} jobs, {len(runs) - n_failed} ok, {n_failed} failed; {len(rows)} settings "
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


# ----------------------------------------------------------------------------- entry
def make_report(dirs: list[str | Path], out: str | Path | None = None, by_keys: list[str] | None = None,
                baseline: dict[str, str] | None = None, target: float = 0.8, plot_by: str | None = None,
                runs: list[dict] | None = None, plots: bool = True) -> dict[str, Any]:
    """Write report.md/report.csv/PNGs and a self-contained report.html into ``out`` (default: the
    first dir). Returns what it wrote."""
    from qsnn.report_html import write_html
    from qsnn.report_plots import plot_all

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


def load_wandb_runs(project: str, group: str | None = None) -> list[dict[str, Any]]:
    """The same run records from the W&B API (online): the run name is the job's overrides."""
    import wandb

    api = wandb.Api()
    out = []
    for run in api.runs(project, filters={"group": group, "jobType": {"$ne": "report"}} if group else None):
        overrides = [o for o in (run.name or "").split(",") if "=" in o]
        hist = [dict(row) for row in run.scan_history(keys=["val/acc", "epoch"])]
        s = {"status": "ok" if run.state == "finished" else "failed", "error": f"W&B state {run.state}",
             "overrides": overrides, "choices": run.config.get("choices") or {}, "seed": run.config.get("seed"),
             "metrics": {k: v for k, v in run.summary.items() if isinstance(v, (int, float))},
             "epochs": hist, "lr": [], "dir": run.url}
        s["params"] = params_of(s)
        out.append(s)
    return out

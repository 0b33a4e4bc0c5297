"""Sweep report: read every job's ``summary.json`` under one or more multirun dirs, group the jobs
into settings (what varies across jobs, seed excluded), and write ``report.md``, ``report.csv``
and PNG plots. Statistics over seeds come from ``qsnn.stats``; this module only groups, formats
and draws.
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


def _finite(xs: Iterable[float]) -> list[float]:
    return [x for x in xs if x is not None and not math.isnan(x)]


# ----------------------------------------------------------------------------- aggregation
def summarize_settings(runs: list[dict], keys: list[str], target: float) -> list[dict]:
    """One row per setting, in first-seen order."""
    groups: dict[str, list[dict]] = {}
    for r in runs:
        groups.setdefault(setting_name(r["params"], keys), []).append(r)
    rows = []
    for name, rs in groups.items():
        ok = [r for r in rs if r.get("status") == "ok"]
        test_values = _finite(metric(r, "test/acc") for r in ok)
        val = stats.summarize(_finite(metric(r, "val/acc_best") for r in ok))
        test = stats.summarize(test_values)
        reached = [n for n in (epochs_to(r, target) for r in ok) if n is not None]
        rate = _finite(final_rate(r) for r in ok)
        row = {"setting": name, **{k: rs[0]["params"].get(k, "") for k in keys},
               "n_ok": len(ok), "n_failed": len(rs) - len(ok), "seeds": " ".join(str(r.get("seed")) for r in ok)}
        for prefix, s in (("val_acc_best", val), ("test_acc", test)):
            row.update({f"{prefix}_mean": s["mean"], f"{prefix}_std": s["std"],
                        f"{prefix}_ci_low": s["ci_low"], f"{prefix}_ci_high": s["ci_high"]})
        row["epochs_to_target_mean"] = sum(reached) / len(reached) if reached else NAN
        row["epochs_to_target_reached"] = f"{len(reached)}/{len(ok)}"
        row["final_rate_mean"] = sum(rate) / len(rate) if rate else NAN
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
    first), Welch CI over seeds. Pooling over e.g. surrogates would mix in their differences."""
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
        a = _finite(metric(r, "test/acc") for r in sel if r["params"].get(bk) == hi)
        b = _finite(metric(r, "test/acc") for r in sel if r["params"].get(bk) == lo)
        if a and b:
            w = stats.welch(a, b)
            out.append({"by": combo[0] if combo else "all", "rest": ",".join(combo[1:]), "hi": hi, "lo": lo,
                        "gap": w["diff"], "ci_low": w["ci_low"], "ci_high": w["ci_high"], "p": w["p"],
                        "n_hi": len(a), "n_lo": len(b)})
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


def render_md(runs, rows, keys, gaps, comps, baseline, target, by, plots, sources) -> str:
    n_failed = sum(r.get("status") != "ok" for r in runs)
    L = ["# Sweep report", "",
         f"Sources: {', '.join(map(str, sources))}  ",
         f"{len(runs)} jobs, {len(runs) - n_failed} ok, {n_failed} failed; {len(rows)} settings "
         f"(grouped by {', '.join(keys) or 'nothing: one setting'}).  ",
         "Accuracies in %, mean ± std [95% t-CI] over seeds; **bold** = best mean test acc for its bit-width; "
         f"epochs to {pct(target, 0)}% val acc are averaged over the seeds that reached it.", ""]
    head = keys + ["val acc best", "test acc", f"epochs to {pct(target, 0)}%", "final rate", "ok", "failed"]
    L += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [str(r.get(k, "")) for k in keys] + [
            mean_std_ci(r, "val_acc_best"), mean_std_ci(r, "test_acc"),
            f"{r['epochs_to_target_mean']:.1f} ({r['epochs_to_target_reached']})"
            if not math.isnan(r["epochs_to_target_mean"]) else f"- ({r['epochs_to_target_reached']})",
            f"{r['final_rate_mean']:.3f}" if not math.isnan(r["final_rate_mean"]) else "-",
            str(r["n_ok"]), str(r["n_failed"])]
        if r.get("best"):
            cells = [f"**{c}**" for c in cells]
        L.append("| " + " | ".join(cells) + " |")
    if gaps:
        g0 = gaps[0]
        rest = ", ".join(k for k in keys if k not in (bits_key(keys), by))
        L += ["", f"## {g0['hi']}-bit minus {g0['lo']}-bit test accuracy", "",
              f"| {by or 'all'} | {rest or '-'} | gap (pp) | 95% CI | Welch p | n ({g0['hi']}/{g0['lo']}) |",
              "|---|---|---|---|---|---|"]
        for g in gaps:
            L.append(f"| {g['by']} | {g['rest'] or '-'} | {pct(g['gap'], 2)} | [{pct(g['ci_low'], 2)}, "
                     f"{pct(g['ci_high'], 2)}] | {g['p']:.3g} | {g['n_hi']}/{g['n_lo']} |")
    if comps:
        L += ["", f"## Against the baseline `{baseline}` (test acc)", "",
              "Welch's t-test per setting, Holm-adjusted across all comparisons (alpha 0.05). "
              "*noise* = not distinguishable from seed noise; *seeds needed* = rough seeds per setting "
              "to resolve a difference of the observed size (80% power).", "",
              "| setting | diff (pp) | 95% CI | p | p (Holm) | verdict | seeds needed |", "|---|---|---|---|---|---|---|"]
        for c in sorted(comps, key=lambda c: -c["diff"] if not math.isnan(c["diff"]) else 0):
            verdict = "**significant**" if c["significant"] else "noise"
            L.append(f"| {c['setting']} | {pct(c['diff'], 2)} | [{pct(c['ci_low'], 2)}, {pct(c['ci_high'], 2)}] | "
                     f"{c['p']:.3g} | {c['p_holm']:.3g} | {verdict} | {c['seeds_needed'] or '-'} |")
    elif keys:
        L += ["", "No baseline comparison: no single setting with >= 2 ok seeds matches the baseline "
              "(pass --baseline key=value,...)."]
    failed = [r for r in runs if r.get("status") != "ok"]
    if failed:
        L += ["", f"## Failed jobs ({len(failed)})", "", "| job dir | overrides | error |", "|---|---|---|"]
        for r in failed:
            err = (r.get("error") or r.get("status") or "").replace("|", "\\|")
            L.append(f"| {r['dir']} | {' '.join(r.get('overrides') or [])} | {err} |")
    if plots:
        L += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    return "\n".join(L) + "\n"


# ----------------------------------------------------------------------------- plots
def _band(values_per_run: list[list[float]]):
    """Mean and 95% t-CI per index over runs (ragged runs: only the indexes they have)."""
    n = max((len(v) for v in values_per_run), default=0)
    mean, lo, hi = [], [], []
    for i in range(n):
        s = stats.summarize([v[i] for v in values_per_run if i < len(v) and not math.isnan(v[i])])
        mean.append(s["mean"])
        lo.append(s["ci_low"] if not math.isnan(s["ci_low"]) else s["mean"])
        hi.append(s["ci_high"] if not math.isnan(s["ci_high"]) else s["mean"])
    return mean, lo, hi


def plot_all(runs, rows, keys, gaps, by, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in runs if r.get("status") == "ok"]
    paths: list[Path] = []
    bk = bits_key(keys)
    panels = sorted({r["params"].get(bk, "") for r in ok}, key=lambda b: int(b) if b.isdigit() else 0) if bk else [""]
    line_vals = list(dict.fromkeys(r["params"].get(by, "all") if by else "all" for r in ok))

    # val accuracy vs epoch: rows = bit-widths, columns = the other keys' combinations (when few),
    # lines = `by` values; the band is the CI over seeds of one setting, not a mix of settings
    if ok:
        rest_keys = [k for k in keys if k not in (bk, by)]
        cols = list(dict.fromkeys(tuple(r["params"].get(k, "") for k in rest_keys) for r in ok))
        if len(cols) > 6:  # too many panels to read: pool over the rest instead
            rest_keys, cols = [], [()]
        fig, axes = plt.subplots(len(panels), len(cols), figsize=(4.2 * len(cols) + 1, 3.2 * len(panels) + 0.6),
                                 sharex=True, sharey=True, squeeze=False)
        for row, b in enumerate(panels):
            for col, combo in enumerate(cols):
                ax = axes[row][col]
                for li, v in enumerate(line_vals):
                    sel = [r for r in ok if (not bk or r["params"].get(bk) == b) and r["params"].get(by, "all") == v
                           and tuple(r["params"].get(k, "") for k in rest_keys) == combo]
                    mean, lo, hi = _band([[e.get("val/acc", NAN) for e in r.get("epochs") or []] for r in sel])
                    if mean:
                        x = range(1, len(mean) + 1)
                        ax.plot(x, [100 * m for m in mean], label=f"{v} (n={len(sel)})", lw=2, color=f"C{li}")
                        ax.fill_between(x, [100 * m for m in lo], [100 * m for m in hi], alpha=0.2, color=f"C{li}")
                title = ", ".join([f"{b}-bit"] * bool(bk) + list(combo)) or "val accuracy"
                ax.set_title(title, fontsize=10)
                ax.grid(alpha=0.3)
                if row == len(panels) - 1:
                    ax.set_xlabel("epoch")
                if col == 0:
                    ax.set_ylabel("val acc (%)")
        axes[0][0].legend(title=by, fontsize=8)
        fig.suptitle("Validation accuracy per epoch: mean over seeds, 95% CI band")
        fig.tight_layout()
        paths.append(_save(fig, out / "val_acc_vs_epoch.png"))

        # LR vs step: one line per `by` value (the LR schedule is the same for every seed)
        fig, ax = plt.subplots(figsize=(7, 3.5))
        for v in line_vals:
            r = next(r for r in ok if r["params"].get(by, "all") == v)
            if r.get("lr"):
                ax.plot(range(len(r["lr"])), r["lr"], label=v, lw=1.5)
        ax.set(title="Learning rate per step", xlabel="step", ylabel="lr")
        ax.grid(alpha=0.3)
        ax.legend(title=by, fontsize=8)
        fig.tight_layout()
        paths.append(_save(fig, out / "lr_vs_step.png"))

    # test accuracy per setting with CI error bars, coloured by bit-width
    shown = [r for r in rows if r["n_ok"]]
    if shown:
        fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(shown) + 2), 4.5))
        colours = {b: f"C{i}" for i, b in enumerate(panels)}
        means = [100 * r["test_acc_mean"] for r in shown]
        err = [[100 * (r["test_acc_mean"] - r["test_acc_ci_low"]) if not math.isnan(r["test_acc_ci_low"]) else 0
                for r in shown],
               [100 * (r["test_acc_ci_high"] - r["test_acc_mean"]) if not math.isnan(r["test_acc_ci_high"]) else 0
                for r in shown]]
        ax.bar(range(len(shown)), means, yerr=err, capsize=3,
               color=[colours.get(r.get(bk, ""), "C0") if bk else "C0" for r in shown],
               edgecolor=["black" if r.get("best") else "none" for r in shown], linewidth=1.5)
        labels = [",".join(str(r.get(k)) for k in keys if k != bk) or r["setting"] for r in shown]
        ax.set_xticks(range(len(shown)), labels, rotation=60, ha="right", fontsize=8)
        lo = min((m - e for m, e in zip(means, err[0])), default=0)
        ax.set_ylim(max(0, lo - 5), 100)
        ax.set(ylabel="test acc (%)", title="Test accuracy per setting (mean, 95% CI; black edge = best per bit-width)")
        if bk:
            for b, c in colours.items():
                ax.bar([0], [0], color=c, label=f"{b}-bit")
            ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        paths.append(_save(fig, out / "test_acc_by_setting.png"))

    if gaps:
        groups = list(dict.fromkeys(x["by"] for x in gaps))
        rests = list(dict.fromkeys(x["rest"] for x in gaps))
        width = 0.8 / len(rests)
        fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(groups) + 2), 4))
        for k, rest in enumerate(rests):
            sel = [x for x in gaps if x["rest"] == rest]
            xs = [groups.index(x["by"]) - 0.4 + width * (k + 0.5) for x in sel]
            err = [[100 * (x["gap"] - x["ci_low"]) if not math.isnan(x["ci_low"]) else 0 for x in sel],
                   [100 * (x["ci_high"] - x["gap"]) if not math.isnan(x["ci_high"]) else 0 for x in sel]]
            ax.bar(xs, [100 * x["gap"] for x in sel], width, yerr=err, capsize=3, label=rest or None, color=f"C{k}")
        ax.set_xticks(range(len(groups)), groups)
        ax.axhline(0, color="black", lw=0.8)
        ax.set(ylabel="gap (pp)", xlabel=by or "",
               title=f"{gaps[0]['hi']}-bit minus {gaps[0]['lo']}-bit test acc (95% CI; > 0: low bits lose)")
        if any(rests):
            ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        paths.append(_save(fig, out / "bit_gap.png"))
    return paths


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- entry
def make_report(dirs: list[str | Path], out: str | Path | None = None, by_keys: list[str] | None = None,
                baseline: dict[str, str] | None = None, target: float = 0.8, plot_by: str | None = None,
                runs: list[dict] | None = None, plots: bool = True) -> dict[str, Any]:
    """Write report.md/report.csv/PNGs into ``out`` (default: the first dir). Returns what it wrote."""
    runs = load_runs(dirs) if runs is None else runs
    if not runs:
        raise FileNotFoundError(f"no summary.json under {', '.join(map(str, dirs))}: is this a multirun dir?")
    out = Path(out or dirs[0])
    out.mkdir(parents=True, exist_ok=True)
    keys = by_keys or infer_keys(runs)
    by = plot_by or ("sched" if "sched" in keys else next((k for k in keys if k != bits_key(keys)), None))
    rows = summarize_settings(runs, keys, target)
    mark_best(rows, keys)
    gaps = bit_gap(runs, keys, by)
    base = find_baseline(rows, keys, baseline)
    comps = comparisons(rows, base)
    pngs = plot_all(runs, rows, keys, gaps, by, out) if plots else []
    write_csv(rows, out / "report.csv")
    (out / "report.md").write_text(render_md(runs, rows, keys, gaps, comps, base, target, by, pngs, dirs))
    return {"rows": rows, "keys": keys, "gaps": gaps, "comparisons": comps, "baseline": base,
            "plots": pngs, "md": out / "report.md", "csv": out / "report.csv", "runs": runs}


def load_wandb_runs(project: str, group: str | None = None) -> list[dict[str, Any]]:
    """The same run records from the W&B API (online): the run name is the job's overrides."""
    import wandb

    api = wandb.Api()
    out = []
    for run in api.runs(project, filters={"group": group} if group else None):
        overrides = [o for o in (run.name or "").split(",") if "=" in o]
        hist = [dict(row) for row in run.scan_history(keys=["val/acc", "epoch"])]
        s = {"status": "ok" if run.state == "finished" else "failed", "error": f"W&B state {run.state}",
             "overrides": overrides, "choices": {}, "seed": run.config.get("seed"),
             "metrics": {k: v for k, v in run.summary.items() if isinstance(v, (int, float))},
             "epochs": hist, "lr": [], "dir": run.url}
        s["params"] = params_of(s)
        out.append(s)
    return out

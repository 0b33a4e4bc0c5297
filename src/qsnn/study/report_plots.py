"""The sweep report's figures (matplotlib, PNG): one function per figure, ``plot_all`` draws those
that the sweep has data for. Accuracies are drawn in %, with per-seed points where a figure shows
a mean, the CI of the report (t-CI over seeds clipped to [0, 100]) and a dashed chance line.
"""
from __future__ import annotations

import math
from pathlib import Path

from qsnn.study.report_load import NAN, bits_key, metric
from qsnn.study.report_tables import acc_summary

CHANCE_STYLE = {"color": "grey", "ls": "--", "lw": 1}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def _chance_line(ax, chance: float | None, horizontal: bool = True) -> None:
    if chance:
        (ax.axhline if horizontal else ax.axvline)(100 * chance, label=f"chance ({100 * chance:.0f}%)", **CHANCE_STYLE)


def _bits_order(values) -> list[str]:
    return sorted(set(values), key=lambda b: (0, int(b)) if str(b).isdigit() else (1, str(b)))


def _err(rows: list[dict], prefix: str = "test_acc") -> list[list[float]]:
    """Matplotlib yerr (below, above) in % from the rows' CI; 0 where there is no CI (one seed)."""
    lo = [100 * (r[f"{prefix}_mean"] - r[f"{prefix}_ci_low"]) if not math.isnan(r[f"{prefix}_ci_low"]) else 0
          for r in rows]
    hi = [100 * (r[f"{prefix}_ci_high"] - r[f"{prefix}_mean"]) if not math.isnan(r[f"{prefix}_ci_high"]) else 0
          for r in rows]
    return [lo, hi]


def _band(values_per_run: list[list[float]]):
    """Mean and clipped 95% t-CI per index over runs (ragged runs: only the indexes they have)."""
    n = max((len(v) for v in values_per_run), default=0)
    mean, lo, hi = [], [], []
    for i in range(n):
        s = acc_summary([v[i] for v in values_per_run if i < len(v) and not math.isnan(v[i])])
        mean.append(s["mean"])
        lo.append(s["ci_low"] if not math.isnan(s["ci_low"]) else s["mean"])
        hi.append(s["ci_high"] if not math.isnan(s["ci_high"]) else s["mean"])
    return mean, lo, hi


def plot_val_curves(ok, keys, by, chance, out: Path) -> Path:
    """Val accuracy per epoch: rows = bit-widths, columns = the other keys' combinations (when few),
    lines = ``by`` values; the band is the CI over the seeds of one setting, not a mix of settings."""
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    bk = bits_key(keys)
    panels = _bits_order(r["params"].get(bk, "") for r in ok) if bk else [""]
    line_vals = list(dict.fromkeys(r["params"].get(by, "all") if by else "all" for r in ok))
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
                    ax.plot(x, [100 * m for m in mean], label=f"{v} (n={len(sel)})", lw=2, marker="o", ms=3,
                            color=f"C{li}")
                    ax.fill_between(x, [100 * m for m in lo], [100 * m for m in hi], alpha=0.2, color=f"C{li}")
            _chance_line(ax, chance)
            ax.set_title(", ".join([f"{b}-bit"] * bool(bk) + list(combo)) or "val accuracy", fontsize=10)
            ax.set_ylim(0, 100)
            ax.grid(alpha=0.3)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers, not 2.5
            if row == len(panels) - 1:
                ax.set_xlabel("epoch")
            if col == 0:
                ax.set_ylabel("val acc (%)")
    axes[0][0].legend(title=by, fontsize=8)
    fig.suptitle("Validation accuracy per epoch: mean over seeds, 95% CI band")
    fig.tight_layout()
    return _save(fig, out / "val_acc_vs_epoch.png")


def plot_lr(ok, by, out: Path) -> Path:
    """LR per step, one line per ``by`` value (the LR schedule is the same for every seed)."""
    fig, ax = _pyplot().subplots(figsize=(7, 3.5))
    for v in dict.fromkeys(r["params"].get(by, "all") for r in ok):
        r = next(r for r in ok if r["params"].get(by, "all") == v)
        if r.get("lr"):
            ax.plot(range(len(r["lr"])), r["lr"], label=v, lw=1.5)
    ax.set(title="Learning rate per step", xlabel="step", ylabel="lr")
    ax.grid(alpha=0.3)
    ax.legend(title=by, fontsize=8)
    fig.tight_layout()
    return _save(fig, out / "lr_vs_step.png")


def plot_test_bars(shown, keys, chance, out: Path) -> Path:
    """Test accuracy per setting: the bit-widths of one setting side by side, CI error bars, one
    dot per seed, black edge = best per bit-width, hatched = chance level."""
    plt = _pyplot()
    bk = bits_key(keys)
    widths = _bits_order(r.get(bk, "") for r in shown) if bk else [""]
    others = [k for k in keys if k != bk]
    groups = list(dict.fromkeys(tuple(r.get(k, "") for k in others) for r in shown))
    w = 0.8 / len(widths)
    fig, ax = plt.subplots(figsize=(max(7, (0.35 * len(widths) + 0.3) * len(groups) + 2), 4.5))
    for j, b in enumerate(widths):
        sel = [r for r in shown if not bk or r.get(bk) == b]
        xs = [groups.index(tuple(r.get(k, "") for k in others)) - 0.4 + w * (j + 0.5) for r in sel]
        ax.bar(xs, [100 * r["test_acc_mean"] for r in sel], w, yerr=_err(sel), capsize=3, color=f"C{j}",
               label=f"{b}-bit" if bk else None, edgecolor=["black" if r.get("best") else "none" for r in sel],
               linewidth=1.5)
        for x, r in zip(xs, sel):
            if r.get("at_chance"):
                ax.bar([x], [100 * r["test_acc_mean"]], w, fill=False, hatch="//", edgecolor="grey", lw=0)
            vals = r["_test_values"]  # spread across the bar, clear of the CI bar in its middle
            offs = [0.0] if len(vals) == 1 else [-0.3 + 0.6 * i / (len(vals) - 1) for i in range(len(vals))]
            ax.scatter([x + w * o for o in offs], [100 * v for v in vals],
                       s=12, color="black", zorder=3, label="seeds" if (j, x) == (0, xs[0]) else None)
    _chance_line(ax, chance)
    ax.set_xticks(range(len(groups)), [",".join(g) or "all" for g in groups], rotation=60 if len(groups) > 4 else 0,
                  ha="right" if len(groups) > 4 else "center", fontsize=8)
    lows = [100 * r["test_acc_ci_low"] for r in shown if not math.isnan(r["test_acc_ci_low"])]
    lows += [100 * v for r in shown for v in r["_test_values"]] + ([100 * chance] if chance else [])
    ax.set_ylim(max(0, min(lows, default=0) - 5), 100)
    ax.set(ylabel="test acc (%)", xlabel=", ".join(others))
    ax.set_title("Test accuracy per setting: mean, 95% CI, dots = seeds\n"
                 "black edge = best per bit-width, hatched = chance level", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _save(fig, out / "test_acc_by_setting.png")


def plot_gaps(gaps, by, out: Path) -> Path:
    """High- minus low-bit test acc per setting; grey hatched bars: both sides at chance level (the
    gap of two nets that learned nothing says nothing about quantization)."""
    groups = list(dict.fromkeys(x["by"] for x in gaps))
    rests = list(dict.fromkeys(x["rest"] for x in gaps))
    width = 0.8 / len(rests)
    fig, ax = _pyplot().subplots(figsize=(max(5, 1.6 * len(groups) + 2), 4))
    for k, rest in enumerate(rests):
        sel = [x for x in gaps if x["rest"] == rest]
        xs = [groups.index(x["by"]) - 0.4 + width * (k + 0.5) for x in sel]
        err = [[100 * (x["gap"] - x["ci_low"]) if not math.isnan(x["ci_low"]) else 0 for x in sel],
               [100 * (x["ci_high"] - x["gap"]) if not math.isnan(x["ci_high"]) else 0 for x in sel]]
        ax.bar(xs, [100 * x["gap"] for x in sel], width, yerr=err, capsize=3, label=rest or None,
               color=["lightgrey" if x.get("both_chance") else f"C{k}" for x in sel], edgecolor=["grey" if x.get("both_chance") else "none" for x in sel])
        for x, g in zip(xs, sel):
            if g.get("both_chance"):
                ax.bar([x], [100 * g["gap"]], width, fill=False, hatch="//", edgecolor="grey", lw=0)
                top = 100 * (g["ci_high"] if not math.isnan(g["ci_high"]) else max(g["gap"], 0))
                ax.annotate("both at\nchance", (x, top), ha="center", va="bottom", fontsize=7, color="dimgrey")
    ax.set_xticks(range(len(groups)), groups)
    ax.axhline(0, color="black", lw=0.8)
    ax.set(ylabel="gap (pp)", xlabel=by or "",
           title=f"{gaps[0]['hi']}-bit minus {gaps[0]['lo']}-bit test acc (95% CI; > 0: low bits lose)")
    if any(rests):
        ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _save(fig, out / "bit_gap.png")


def color_range(values: list[float]) -> tuple[float, float]:
    """The heatmap's colour scale: the cells' own range (padded), not 0-100: cells at 96.3-99.5% on
    a 0-100 scale are all one colour."""
    lo, hi = min(values), max(values)
    pad = max(0.05 * (hi - lo), 0.5)
    return max(lo - pad, 0.0), min(hi + pad, 100.0)


def plot_heatmap(shown, keys, by, out: Path) -> Path | None:
    """Mean test accuracy, bits (rows) x ``by`` (columns), one panel per combination of the other
    keys (e.g. per surrogate); each cell also shows its 95% CI. One colour scale for all panels,
    spanning the cells' range (``color_range``)."""
    plt = _pyplot()
    bk = bits_key(keys)
    row_vals = _bits_order(r.get(bk, "") for r in shown) if bk else [""]
    col_vals = list(dict.fromkeys(r.get(by, "") for r in shown)) if by else [""]
    rest = [k for k in keys if k not in (bk, by)]
    panels = list(dict.fromkeys(tuple(r.get(k, "") for k in rest) for r in shown))
    if len(panels) > 9 or len(row_vals) * len(col_vals) < 2:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(1.6 * len(col_vals) * len(panels) + 2, 0.9 * len(row_vals) + 1.8),
                             squeeze=False)
    image = None
    vmin, vmax = color_range([100 * r["test_acc_mean"] for r in shown])
    for ax, panel in zip(axes[0], panels):
        grid = [[NAN] * len(col_vals) for _ in row_vals]
        for r in shown:
            if tuple(r.get(k, "") for k in rest) == panel:
                i, j = row_vals.index(r.get(bk, "") if bk else ""), col_vals.index(r.get(by, "") if by else "")
                grid[i][j] = 100 * r["test_acc_mean"]
                ci = "" if math.isnan(r["test_acc_ci_low"]) else \
                    f"\n[{100 * r['test_acc_ci_low']:.1f}, {100 * r['test_acc_ci_high']:.1f}]"
                ax.text(j, i, f"{grid[i][j]:.1f}{ci}", ha="center", va="center", fontsize=8,
                        color="white" if grid[i][j] < (vmin + vmax) / 2 else "black")
        image = ax.imshow(grid, vmin=vmin, vmax=vmax, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(col_vals)), col_vals, fontsize=8, rotation=30 if len(col_vals) > 3 else 0)
        ax.set_yticks(range(len(row_vals)), [f"{b}-bit" if bk else "all" for b in row_vals], fontsize=8)
        if panel:
            ax.set_title(", ".join(panel), fontsize=10)
        ax.set_xlabel(by or "")
    fig.colorbar(image, ax=list(axes[0]), label=f"mean test acc (%), scale {vmin:.1f}-{vmax:.1f}", shrink=0.9)
    fig.suptitle(f"Mean test accuracy (95% CI) per {bk or 'setting'} x {by or '-'}"
                 + (f", one panel per {', '.join(rest)}" if rest else ""), fontsize=10)
    return _save(fig, out / "test_acc_heatmap.png")


COST_AXES = (("cost/footprint_bytes", "footprint (bytes)"), ("cost/synops", "synaptic ops per sample"))


def plot_cost(shown, runs, keys, chance, out: Path) -> Path | None:
    """Test accuracy against each cost metric the runs have (footprint, synops): one point per
    setting (mean, 95% CI), small dots per seed, colour = bit-width; log x."""
    axes_keys = [(k, t) for k, t in COST_AXES if any(f"{k.replace('/', '_')}_mean" in r for r in shown)]
    if not axes_keys:
        return None
    plt = _pyplot()
    bk = bits_key(keys)
    widths = _bits_order(r.get(bk, "") for r in shown) if bk else [""]
    ok = [r for r in runs if r.get("status") == "ok"]
    fig, axes = plt.subplots(1, len(axes_keys), figsize=(5.5 * len(axes_keys), 4.2), squeeze=False)
    for ax, (key, title) in zip(axes[0], axes_keys):
        col = f"{key.replace('/', '_')}_mean"
        for j, b in enumerate(widths):
            sel = [r for r in shown if (not bk or r.get(bk) == b) and not math.isnan(r.get(col, NAN))]
            if not sel:
                continue
            ax.errorbar([r[col] for r in sel], [100 * r["test_acc_mean"] for r in sel], yerr=_err(sel), fmt="o",
                        color=f"C{j}", capsize=3, label=f"{b}-bit" if bk else "settings")
            seeds = [r for r in ok if not bk or r["params"].get(bk) == b]
            ax.scatter([metric(r, key) for r in seeds], [100 * metric(r, "test/acc") for r in seeds], s=8,
                       color=f"C{j}", alpha=0.4)
        _chance_line(ax, chance)
        xs = [r[col] for r in shown if r.get(col, 0) > 0]
        if xs and max(xs) > 10 * min(xs):  # log only where the costs span orders of magnitude
            ax.set_xscale("log")
        ax.set(xlabel=title, ylabel="test acc (%)", title=f"Test accuracy vs {title}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, out / "test_acc_vs_cost.png")


def plot_all(runs, rows, keys, gaps, by, out: Path, chance: float | None = None) -> list[Path]:
    ok = [r for r in runs if r.get("status") == "ok"]
    shown = [r for r in rows if r["n_ok"] and not math.isnan(r["test_acc_mean"])]
    paths: list[Path | None] = []
    if ok:
        paths += [plot_val_curves(ok, keys, by, chance, out), plot_lr(ok, by, out)]
    if shown:
        paths += [plot_test_bars(shown, keys, chance, out), plot_heatmap(shown, keys, by, out),
                  plot_cost(shown, runs, keys, chance, out)]
    if gaps:
        paths.append(plot_gaps(gaps, by, out))
    return [p for p in paths if p is not None]

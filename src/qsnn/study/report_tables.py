"""The sweep report's numbers: one row per setting (mean, CI over seeds, cost means), the best
setting per bit-width, the full- minus low-bit gaps, the comparisons with the baseline. Statistics
over seeds come from ``qsnn.study.stats``; the runs from ``qsnn.study.report_load``.
"""
from __future__ import annotations

import math

from qsnn.study import stats
from qsnn.study.report_load import (NAN, bits_key, chance_of, cost_keys, epochs_to, final_rate, finite, mean_of, metric,
                                    setting_name)

DEFAULT_BASELINE = {"quant.bits": "32", "sched": "constant", "surrogate": "fast_sigmoid"}
# A mean test accuracy less than this fraction of the way from chance (1/num_classes) to 100%
# counts as chance level (10 classes: below 19%; 2 classes: below 55%).
CHANCE_MARGIN = 0.1


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
        test_values = finite(metric(r, "test/acc") for r in ok)
        val = acc_summary(finite(metric(r, "val/acc_best") for r in ok))
        test = acc_summary(test_values)
        reached = [n for n in (epochs_to(r, target) for r in ok) if n is not None]
        row = {"setting": name, **{k: rs[0]["params"].get(k, "") for k in keys},
               "n_ok": len(ok), "n_failed": len(rs) - len(ok), "seeds": " ".join(str(r.get("seed")) for r in ok)}
        for prefix, s in (("val_acc_best", val), ("test_acc", test)):
            row.update({f"{prefix}_mean": s["mean"], f"{prefix}_std": s["std"],
                        f"{prefix}_ci_low": s["ci_low"], f"{prefix}_ci_high": s["ci_high"]})
        row["epochs_to_target_mean"] = mean_of(reached)
        row["epochs_to_target_reached"] = f"{len(reached)}/{len(ok)}"
        row["final_rate_mean"] = mean_of(finite(final_rate(r) for r in ok))
        row["chance"] = chance_of(ok or rs)
        row["at_chance"] = at_chance(test["mean"], row["chance"])
        for k in costs:
            row[f"{k.replace('/', '_')}_mean"] = mean_of(finite(metric(r, k) for r in ok))
        row["_test_values"] = test_values
        rows.append(row)
    return rows


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
        a, b = (finite(metric(r, "test/acc") for r in side[w]) for w in (hi, lo))
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

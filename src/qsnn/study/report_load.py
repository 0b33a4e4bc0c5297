"""The sweep report's input: every job's ``summary.json`` under one or more multirun dirs (or the
same records from the W&B API), each with ``params`` (its group choices updated by its overrides),
and the per-run numbers the tables and plots read from them.
"""
from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path
from typing import Any, Iterable

NAN = float("nan")
# Never grouping keys: the seed is what we average over; paths and hydra keys only say where.
IGNORED_PREFIXES = ("seed", "hydra.", "paths.", "data.seed", "print_config", "callbacks.progress_bar")


def load_runs(dirs: Iterable[str | Path]) -> list[dict[str, Any]]:
    """All job summaries under ``dirs`` (searched recursively), each with ``params``: the job's
    group choices updated by its overrides (``key -> value`` strings). A summary.json that cannot be
    read (not UTF-8, not JSON, not a job summary) is a row with status "unreadable", one that says
    ok without metrics a row "no metrics" (neither counts as ok); each with one warning line."""
    runs = []
    for d in dirs:
        for path in sorted(Path(d).rglob("summary.json"), key=natural):
            s = read_summary(path)
            s["dir"] = str(path.parent)
            s["params"] = params_of(s)
            runs.append(s)
        runs += unfinished_jobs(Path(d), {r["dir"] for r in runs})
    return runs


def read_summary(path: Path) -> dict[str, Any]:
    try:
        s = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError) as e:  # not UTF-8, not JSON, half-written: it must not sink the report
        why = f"not UTF-8 text ({e.reason} at byte {e.start})" if isinstance(e, UnicodeDecodeError) else \
            f"not readable JSON ({str(e).splitlines()[0]})"
        return _unusable(path, "unreadable", why)
    if not isinstance(s, dict):  # e.g. a file holding just `null`
        return _unusable(path, "unreadable", f"summary.json holds {json.dumps(s)[:40]}, not a job summary")
    if s.get("status") == "ok" and not (isinstance(s.get("metrics"), dict) and s["metrics"]):
        return {**s, **_unusable(path, "no metrics", "status ok but no metrics")}
    return s


def _unusable(path: Path, status: str, why: str) -> dict[str, Any]:
    print(f"warning: {path}: {why}; listed as {status!r}", file=sys.stderr)
    return {"status": status, "error": f"{status}: {why}", "overrides": [], "metrics": {}}


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


def finite(xs: Iterable[float]) -> list[float]:
    return [x for x in xs if x is not None and not math.isnan(x)]


def mean_of(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else NAN


def bits_key(keys: list[str]) -> str | None:
    return next((k for k in keys if k.split(".")[-1] == "bits"), None)

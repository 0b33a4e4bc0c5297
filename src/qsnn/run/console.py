"""What a run prints when it ends: its results as a compact rich table, read from ``summary.json``'s
numbers, then the paths and commands as plain lines (never wrapped, so they can be copied).

- ``print_config(cfg)``: the resolved config as a tree, before a run.
- ``print_run_summary(summary)``: one job of src/train.py or src/eval.py.
- ``print_sweep_summary(sweep_dir)``: one row per job of a multirun (from each job's summary.json;
  job dirs at any depth, as studies nest them),
  the report's path or the command that writes it, and how to upload the offline W&B runs.
  ``MultirunSummary`` is the Hydra callback that calls it (registered in conf/hydra/default.yaml).
"""
from __future__ import annotations

import math
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from rich import box
from rich.console import Console
from rich.table import Table

from qsnn.run.summary import read_summary

REPORT_CMD = "python src/report.py"


def _console() -> Console:
    # stdout like the rest of the run's output; no wrapping of the table below its natural width
    return Console(file=sys.stdout, width=max(Console().width, 60))


def show_path(path: str | Path) -> str:
    """``path`` relative to the current directory when it lies below it (shorter to copy)."""
    p = Path(path).resolve()
    try:
        return str(p.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


def pct(x: Any) -> str:
    return f"{100 * x:.2f} %" if isinstance(x, (int, float)) and math.isfinite(x) else "-"


def _kib(n: float) -> str:
    return f"{n / 1024:.1f} KiB"


def best_epoch(epochs: list[dict], key: str = "val/acc") -> tuple[float, int] | None:
    """(best value, its epoch) over the per-epoch history; the first epoch on ties."""
    rows = [e for e in epochs if isinstance(e.get(key), (int, float)) and math.isfinite(e[key])]
    if not rows:
        return None
    best = max(rows, key=lambda e: e[key])
    return best[key], int(best.get("epoch", rows.index(best)))


def result_rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) pairs of one job's results, from its summary.json dict."""
    m = summary.get("metrics") or {}
    rows = []
    status = summary.get("status", "?")
    rows.append(("status", status if status == "ok" else f"{status}: {summary.get('error', '')}"))
    if "test/acc" in m:
        rows.append(("test accuracy", f"{pct(m['test/acc'])}   loss {m.get('test/loss', float('nan')):.4f}"))
    best = best_epoch(summary.get("epochs") or [])
    if best is not None:
        n = len(summary["epochs"])
        rows.append(("best val accuracy", f"{pct(best[0])}   epoch {best[1]} ({n} epoch{'s' * (n != 1)} run)"))
    if "cost/footprint_bytes" in m:
        bits = summary.get("bits")
        rows.append(("weights + buffers", f"{_kib(m['cost/footprint_bytes'])}"
                     + (f" at {bits} bits" if bits else "")
                     + f"   fp32 {_kib(m.get('cost/footprint_fp32_bytes', float('nan')))}"
                     + f"   saving {pct(m.get('cost/footprint_saving'))}"))
    if "cost/synops" in m:
        rows.append(("synaptic ops / sample", f"{m['cost/synops']:,.0f}   AC {m.get('cost/synops_ac', 0):,.0f}"
                     f"   MAC {m.get('cost/synops_mac', 0):,.0f}   dense {m.get('cost/synops_dense', 0):,.0f}"))
    if "cost/activation_sparsity" in m:
        rows.append(("sparsity", f"activations {pct(m['cost/activation_sparsity'])}"
                     f"   weights {pct(m.get('cost/connection_sparsity'))}"))
    times = [(k, summary[k]) for k in ("startup_s", "fit_s", "test_s", "wall_s") if isinstance(summary.get(k), (int, float))]
    if times:
        names = {"startup_s": "start-up", "fit_s": "fit", "test_s": "test", "wall_s": "total"}
        rows.append(("seconds", "   ".join(f"{names[k]} {v:.1f}" for k, v in times)))
    return rows


def where_lines(summary: dict[str, Any]) -> list[str]:
    """Plain lines: the output dir and the W&B run (its URL, or its offline dir and the sync command)."""
    lines = []
    if summary.get("ckpt_path"):
        lines.append(f"checkpoint: {show_path(summary['ckpt_path'])}")
    if summary.get("output_dir"):
        lines.append(f"output dir: {show_path(summary['output_dir'])}")
    w = summary.get("wandb") or {}
    if w.get("url"):
        lines.append(f"W&B run:    {w['url']}")
    elif w.get("dir"):
        lines.append(f"W&B run:    {show_path(w['dir'])} (offline)")
        lines.append(f"upload it:  wandb sync {show_path(w['dir'])}")
    return lines


def print_config(cfg) -> None:
    """Print the resolved config as a rich tree (the runner saves it as config_resolved.yaml)."""
    import rich
    import rich.syntax
    import rich.tree
    from omegaconf import DictConfig, OmegaConf

    tree = rich.tree.Tree("CONFIG", guide_style="dim")
    for key, node in cfg.items():
        branch = tree.add(str(key))
        text = OmegaConf.to_yaml(node, resolve=True) if isinstance(node, DictConfig) else str(node)
        branch.add(rich.syntax.Syntax(text, "yaml"))
    rich.print(tree)


def print_run_summary(summary: dict[str, Any], title: str = "Result") -> None:
    table = Table(title=title, title_justify="left", box=box.SIMPLE, show_header=False, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for label, value in result_rows(summary):
        table.add_row(label, value, style=None if label != "status" or value == "ok" else "red")
    console = _console()
    console.print(table)
    for line in where_lines(summary):
        print(line, flush=True)


def read_summaries(sweep_dir: str | Path, since: float | None = None) -> list[tuple[str, dict | None]]:
    """(job dir relative to the sweep dir, summary or None) for each job under ``sweep_dir`` (a dir with
    Hydra's ``.hydra/`` or a summary.json, at any depth: studies nest them), in natural order; with
    ``since`` (a time.time()), only the jobs this multirun touched."""
    root = Path(sweep_dir)
    if not root.is_dir():
        return []
    marks = list(root.rglob(".hydra/overrides.yaml")) + list(root.rglob("summary.json"))
    newest: dict[Path, float] = {}
    for m in marks:
        job = m.parent.parent if m.name == "overrides.yaml" else m.parent
        newest[job] = max(newest.get(job, 0.0), m.stat().st_mtime)
    jobs = [j for j, t in newest.items() if j != root and (since is None or t >= since)]
    out = []
    for job in sorted(jobs, key=lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(p))]):
        out.append((str(job.relative_to(root)), read_summary(job)))
    return out


def varying_overrides(summaries: list[dict]) -> list[str]:
    """Override keys whose value differs across jobs (all of them when there is one job)."""
    values: dict[str, set] = {}
    for s in summaries:
        for o in s.get("overrides") or []:
            k, _, v = o.partition("=")
            values.setdefault(k, set()).add(v)
    n = len(summaries)
    return [k for k, vs in values.items()
            if n == 1 or len(vs) > 1 or sum(k in _keys(s) for s in summaries) < n]


def _keys(summary: dict) -> set[str]:
    return {o.partition("=")[0] for o in summary.get("overrides") or []}


def print_sweep_summary(sweep_dir: str | Path, since: float | None = None) -> None:
    jobs = read_summaries(sweep_dir, since)
    done = [s for _, s in jobs if s]
    keys = varying_overrides(done)
    table = Table(title=f"Multirun: {len(jobs)} job{'s' * (len(jobs) != 1)}", title_justify="left", box=box.SIMPLE)
    for name, justify in (("#", "right"), ("overrides", "left"), ("status", "left"), ("test acc", "right"),
                          ("best val acc", "right"), ("fit s", "right")):
        table.add_column(name, justify=justify)
    for job, s in jobs:
        if s is None:
            table.add_row(job, "", "no summary.json", "-", "-", "-", style="red")
            continue
        m = s.get("metrics") or {}
        over = " ".join(o for o in s.get("overrides") or [] if o.partition("=")[0] in keys)
        best = best_epoch(s.get("epochs") or [])
        fit = s.get("fit_s")
        table.add_row(job, over, s.get("status", "?"), pct(m.get("test/acc")), pct(best[0]) if best else "-",
                      f"{fit:.1f}" if isinstance(fit, (int, float)) else "-",
                      style=None if s.get("status") == "ok" else "red")
    _console().print(table)
    for line in sweep_lines(Path(sweep_dir), done):
        print(line, flush=True)


def sweep_lines(sweep_dir: Path, summaries: list[dict]) -> list[str]:
    d = show_path(sweep_dir)
    lines = [f"sweep dir:  {d}"]
    report = sweep_dir / "report.md"
    lines.append(f"report:     {show_path(report)}" if report.is_file() else f"report:     {REPORT_CMD} {d}")
    offline = [s["wandb"]["dir"] for s in summaries if (s.get("wandb") or {}).get("dir") and not s["wandb"].get("url")]
    if offline:
        # <sweep dir>/<job dir, any depth>/wandb/offline-run-*: one glob when every job sits at one depth
        depths = {len(Path(os.path.relpath(w, sweep_dir)).parts) - 2 for w in offline}
        target = (f"{d}/{'*/' * depths.pop()}wandb/offline-run-*" if len(depths) == 1 and min(depths) >= 1
                  else " ".join(show_path(w) for w in offline))
        lines.append(f"W&B:        {len(offline)} offline run{'s' * (len(offline) != 1)}; upload: wandb sync {target}")
    return lines


class MultirunSummary(Callback):
    """Hydra callback: at the end of a multirun, print the table of its jobs (print_sweep_summary)."""

    def __init__(self) -> None:
        self.sweep_dir: str | None = None
        self.started: float | None = None

    def on_multirun_start(self, config, **kwargs) -> None:
        self.sweep_dir = str(config.hydra.sweep.dir)  # resolved once: ${now:} is cached by Hydra
        self.started = time.time() - 1.0  # file mtimes may be rounded down to the second

    def on_multirun_end(self, config, **kwargs) -> None:
        # only this multirun's jobs: a re-launched sweep or a study's later phase shares the dir
        print_sweep_summary(self.sweep_dir or str(config.hydra.sweep.dir), since=self.started)

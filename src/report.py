"""Report for one or more multirun dirs: report.md, report.csv, PNG plots and a self-contained
report.html in the (first) dir.

    python src/report.py logs/sweeps/standard/<timestamp>
    python src/report.py dirA dirB --by quant.bits,sched --baseline quant.bits=32,sched=constant
    python src/report.py logs/sweeps/standard/<timestamp> --wandb   # also log it to the sweep's W&B group
    python src/report.py --wandb-project me/qsnn --wandb-group <sweep dir name> --out reports/x
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from qsnn.errors import ReportInputError
from qsnn.study.report import make_report
from qsnn.study.report_load import load_wandb_runs


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dirs", nargs="*", help="multirun dirs (searched recursively for summary.json)")
    p.add_argument("--out", help="where to write the report (default: the first dir)")
    p.add_argument("--by", help="grouping keys, comma-separated (default: what varies across runs, seed excluded)")
    p.add_argument("--baseline", help="baseline setting as key=value,... (default quant.bits=32,sched=constant,"
                                      "surrogate=fast_sigmoid, restricted to the keys that vary)")
    p.add_argument("--target", type=float, default=0.8, help="val accuracy for 'epochs to target' (default 0.8)")
    p.add_argument("--plot-by", help="key drawn as lines in the plots (default: sched when it varies)")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--wandb", action="store_true",
                   help="also log the table, plots and report.html to a run (job_type report) of the sweep's W&B "
                        "group (the first dir's name, in the jobs' W&B project); offline unless an API key is "
                        "configured")
    p.add_argument("--wandb-project", help="read runs from the W&B API (entity/project) instead of dirs")
    p.add_argument("--wandb-group", help="with --wandb-project: only this group (a sweep dir name)")
    a = p.parse_args(argv)
    if not a.dirs and not a.wandb_project:
        p.error("give a multirun dir or --wandb-project")
    if a.wandb_project and not (a.out or a.dirs):
        p.error("--wandb-project needs --out (where to write the report)")
    return a


def log_to_wandb(a: argparse.Namespace, res: dict) -> None:
    from qsnn.study.report_wandb import log_report, wandb_target

    if a.wandb_project:  # the runs came from this project and group
        entity, _, project = a.wandb_project.rpartition("/")
        group = a.wandb_group or Path(a.out).resolve().name
    else:  # the jobs' own project (logger.wandb in their config) and group (the sweep dir's name)
        target = wandb_target(a.dirs[0])
        entity, project, group = target["entity"], target["project"] or "qsnn", Path(a.dirs[0]).resolve().name
    w = log_report(res, group=group, project=project, entity=entity or None)
    where = w["url"] or f"offline run {w['run_dir']}; upload it with: {w['sync']}"
    print(f"W&B report run (group {group}, job_type report): {where}")


def main(argv=None) -> int:
    a = parse_args(argv)
    baseline = dict(kv.split("=", 1) for kv in a.baseline.split(",")) if a.baseline else None
    runs = load_wandb_runs(a.wandb_project, a.wandb_group) if a.wandb_project else None
    try:
        res = make_report(a.dirs or [a.out], out=a.out, by_keys=a.by.split(",") if a.by else None,
                          baseline=baseline, target=a.target, plot_by=a.plot_by, runs=runs, plots=not a.no_plots)
    except (FileNotFoundError, ReportInputError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(res["md"].read_text())
    print(f"wrote {res['md']}, {res['csv']}, {res['html'].name}" + "".join(f", {p.name}" for p in res["plots"]))
    if a.wandb:
        log_to_wandb(a, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())

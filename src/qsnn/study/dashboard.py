"""A W&B report for one sweep, built as code with the ``wandb-workspaces`` library:

    python -m qsnn.study.dashboard --sweep-dir DIR [--project P] [--entity E] [--dry-run FILE]

The sweep's jobs are one W&B group (the sweep dir's name, ``qsnn.run.config.wandb_group``). The
keys come from what varies across the jobs (``qsnn.study.report``'s loading and key inference), not
from a fixed list. Panels: val accuracy per epoch grouped by the line key (sched when it varies)
with one panel grid per bit-width (a facet: each grid's run set is filtered to one bit-width);
test accuracy per bit-width x the other keys; the LR per step; a parallel-coordinates panel from
the swept keys to test accuracy; every ``cost/*`` metric of the sweep and test accuracy against
the footprint.

A report rather than a saved workspace: a workspace has one run set for all its panels, so it
cannot facet; a report's panel grids each have their own. Group choices (``sched=cosine``) are
read from the run config's ``choices`` (``qsnn.run.runner`` logs them there), overrides of values
(``quant.bits=4``) from their place in the config.

``--dry-run FILE`` writes the library's own wire model (``Report._to_model()``, the JSON that
``save()`` sends) without network. The run sets then carry no project: W&B resolves a project
to its internal id only on save.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from qsnn.study.report_load import bits_key, cost_keys, infer_keys, load_runs
from qsnn.study.report_tables import plot_key
from qsnn.study.report_wandb import wandb_target


# ----------------------------------------------------------------------------- what the sweep holds
def sweep_info(sweep_dir: str | Path) -> dict[str, Any]:
    """Group, varying keys and where each lives in the W&B run config, from the jobs' files."""
    import yaml

    sweep_dir = Path(sweep_dir)
    runs = load_runs([sweep_dir])
    if not runs:
        raise FileNotFoundError(f"no summary.json under {sweep_dir}: is this a multirun dir?")
    keys = infer_keys(runs)
    choices = {k for r in runs for k in (r.get("choices") or {})}
    configs = [yaml.safe_load(p.read_text()) or {} for p in sorted(sweep_dir.glob("*/config_resolved.yaml"))]
    optims = list(dict.fromkeys(str((c.get("optim") or {}).get("_target_", "")).split(".")[-1] for c in configs))
    bk = bits_key(keys)
    return {"group": sweep_dir.name, "runs": runs, "keys": keys, "bits": bk, "by": plot_key(keys),
            "config_key": {k: f"choices.{k}" if k in choices else k for k in keys},
            "values": {k: list(dict.fromkeys(r["params"].get(k, "") for r in runs)) for k in keys},
            "costs": cost_keys(runs), **wandb_target(sweep_dir), "lr_keys": [f"lr-{o}" for o in optims if o]}


def _literal(value: str) -> str:
    """A config value as the filter language writes it: numbers bare, everything else quoted."""
    try:
        float(value)
        return value
    except ValueError:
        return repr(value)


# ----------------------------------------------------------------------------- the report
def build_report(info: dict, entity: str, project: str, resolve_projects: bool = True):
    """The report for ``info`` (``sweep_info``). ``resolve_projects=False`` leaves the run sets'
    entity/project empty so that serialising needs no network (``--dry-run``)."""
    import wandb_workspaces.reports.v2 as wr

    ck, bk, by, keys = info["config_key"], info["bits"], info["by"], info["keys"]
    base = f"Metric('Group') = '{info['group']}' and Metric('JobType') != 'report'"
    where = {"entity": entity, "project": project} if resolve_projects else {}

    def runset(name: str, extra: str = "", groupby: list[str] = ()) -> wr.Runset:
        return wr.Runset(name=name, filters=base + (f" and {extra}" if extra else ""),
                         groupby=[f"config.{ck[k]}" for k in groupby], **where)

    mean_ci = {"groupby_aggfunc": "mean", "groupby_rangefunc": "stderr"}
    facets = info["values"][bk] if bk else [None]
    blocks = [wr.P(f"Sweep {info['group']}: {len(info['runs'])} jobs; swept keys: {', '.join(keys) or 'none'}. "
                   "Lines and bars: mean over seeds with the standard error. Built by python -m qsnn.study.dashboard."),
              wr.H2("Validation accuracy per epoch" + (f", by {by}" if by else "") + (f", one grid per {bk}" if bk else ""))]
    for b in facets:
        title = f"val/acc, {bk}={b}" if bk else "val/acc"
        blocks.append(wr.PanelGrid(
            runsets=[runset(f"{bk}={b}" if bk else "sweep", f"Config('{ck[bk]}') = {_literal(b)}" if bk else "",
                            [by] if by else [])],
            panels=[wr.LinePlot(title=title, x="epoch", y=["val/acc"], range_y=(0, 1), **mean_ci)]))
    bar_keys = ([bk] if bk else []) + [k for k in keys if k not in (bk, by)]
    bar_keys = bar_keys if len(bar_keys) > 1 or not by else bar_keys + [by]
    blocks += [wr.H2(f"Test accuracy per {' x '.join(bar_keys) or 'run'}"),
               wr.PanelGrid(runsets=[runset("sweep", groupby=bar_keys)],
                            panels=[wr.BarPlot(title="test/acc", metrics=["test/acc"], orientation="v", **mean_ci)])]
    blocks += [wr.H2("Learning rate per step"),
               wr.PanelGrid(runsets=[runset("sweep", groupby=[by] if by else [])],
                            panels=[wr.LinePlot(title="learning rate", x="trainer/global_step", y=info["lr_keys"],
                                                metric_regex="^(lr-.*|.*/lr|lr)$")])]
    columns = [wr.ParallelCoordinatesPlotColumn(metric=wr.Config(ck[k]), display_name=k) for k in keys]
    columns.append(wr.ParallelCoordinatesPlotColumn(metric=wr.SummaryMetric("test/acc"), display_name="test/acc"))
    blocks += [wr.H2("Swept keys to test accuracy"),
               wr.PanelGrid(runsets=[runset("sweep")],
                            panels=[wr.ParallelCoordinatesPlot(title="swept keys -> test/acc", columns=columns)])]
    if info["costs"]:
        cost_panels = [wr.BarPlot(title=k, metrics=[k], orientation="v", **mean_ci) for k in info["costs"]]
        if "cost/footprint_bytes" in info["costs"]:
            cost_panels.insert(0, wr.ScatterPlot(title="test/acc vs footprint", x=wr.SummaryMetric("cost/footprint_bytes"),
                                                 y=wr.SummaryMetric("test/acc"), log_x=True))
        blocks += [wr.H2("Cost metrics (NeuroBench definitions)"),
                   wr.PanelGrid(runsets=[runset("sweep", groupby=bar_keys)], panels=cost_panels)]
    return wr.Report(entity=entity, project=project, title=f"qsnn sweep {info['group']}"[:128],
                     description=f"W&B group {info['group']}", blocks=blocks, width="fluid")


def spec(report) -> dict:
    """The library's wire model of the report (what ``Report.save()`` uploads), as JSON data."""
    return report._to_model().model_dump(mode="json", by_alias=True, exclude_none=True)


# ----------------------------------------------------------------------------- entry
def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m qsnn.study.dashboard", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sweep-dir", required=True, help="the multirun dir (its name is the W&B group)")
    p.add_argument("--project", help="W&B project (default: the jobs' logger.wandb.project, else qsnn)")
    p.add_argument("--entity", help="W&B entity (default: the jobs' logger.wandb.entity, $WANDB_ENTITY, "
                                    "else your default entity on save)")
    p.add_argument("--dry-run", metavar="FILE", help="write the report spec as JSON to FILE; no network")
    return p.parse_args(argv)


def main(argv=None) -> int:
    a = parse_args(argv)
    try:
        info = sweep_info(a.sweep_dir)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    project = a.project or info["project"] or "qsnn"
    entity = a.entity or info["entity"] or os.environ.get("WANDB_ENTITY") or ""
    if a.dry_run:
        report = build_report(info, entity, project, resolve_projects=False)
        doc = {"kind": "report", "library": "wandb-workspaces", "entity": entity, "project": project,
               "group": info["group"], "keys": info["keys"], "config_keys": info["config_key"], "spec": spec(report)}
        Path(a.dry_run).write_text(json.dumps(doc, indent=1))
        print(f"wrote {a.dry_run}: report for W&B group {info['group']} in {entity or '<default entity>'}/{project} "
              f"(swept keys: {', '.join(info['keys']) or 'none'})")
        return 0
    try:
        import wandb

        entity = entity or wandb.Api().default_entity
        report = build_report(info, entity, project).save()
    except Exception as e:  # no key, offline, unknown project: one line, the spec is still to be had
        msg = f"{type(e).__name__}: {e}".splitlines()[0]
        print(f"error: saving the W&B report needs W&B online with a synced project ({msg}); "
              f"upload the runs with `wandb sync`, or write the spec with --dry-run FILE", file=sys.stderr)
        return 1
    print(f"saved W&B report: {report.url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

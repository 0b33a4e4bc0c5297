"""Log a sweep report to W&B: the settings table (``wandb.Table``), the plots and report.html go to
one run of the sweep's group with job_type ``report``, next to the jobs' runs. Offline unless an
API key is configured (``qsnn.run.config.wandb_mode``), like every other run; ``wandb sync`` uploads it.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any


def wandb_target(sweep_dir: str | Path) -> dict[str, str | None]:
    """{project, entity} the sweep's jobs logged to (their config's logger.wandb), None where unset."""
    import yaml

    for p in sorted(Path(sweep_dir).glob("*/config_resolved.yaml")):
        wb = ((yaml.safe_load(p.read_text()) or {}).get("logger") or {}).get("wandb") or {}
        if wb:
            return {"project": wb.get("project"), "entity": wb.get("entity")}
    return {"project": None, "entity": None}


def _cell(v: Any) -> Any:
    """Table cells: NaN as None (missing), everything else as it is."""
    return None if isinstance(v, float) and math.isnan(v) else v


def settings_table(rows: list[dict]):
    import wandb

    cols = [c for c in rows[0] if not c.startswith("_")] if rows else ["setting"]
    return wandb.Table(columns=cols, data=[[_cell(r.get(c)) for c in cols] for r in rows])


def log_report(res: dict, group: str, project: str = "qsnn", entity: str | None = None,
               out: str | Path | None = None) -> dict[str, Any]:
    """Log ``make_report``'s result to a new run (name ``report``, group ``group``). Returns
    {run_dir, mode, url, sync}: where the run's files are and how to upload them when offline."""
    import wandb

    from qsnn.run.config import wandb_mode

    out = Path(out or res["md"].parent)
    mode = wandb_mode()
    run = wandb.init(project=project, entity=entity, group=group, job_type="report", name=f"report {group}",
                     dir=str(out), mode=mode, reinit="create_new", settings=wandb.Settings(silent=True),
                     config={"keys": res["keys"], "baseline": res["baseline"], "by": res.get("by"),
                             "jobs": len(res["runs"]), "settings": len(res["rows"])})
    try:
        data: dict[str, Any] = {"report/settings": settings_table(res["rows"])}
        data.update({f"report/{p.stem}": wandb.Image(str(p)) for p in res["plots"]})
        if res.get("html"):
            data["report/html"] = wandb.Html(Path(res["html"]).read_text(), inject=False)
        run.log(data)
        run.summary.update({"report/jobs": len(res["runs"]), "report/settings_n": len(res["rows"])})
        run_dir = Path(run.dir).parent
        url = None if mode == "offline" else run.url
    finally:
        run.finish()
    return {"run_dir": run_dir, "mode": mode, "url": url, "sync": f"wandb sync {run_dir}" if url is None else None}

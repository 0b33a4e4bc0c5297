"""python -m qsnn.study.dashboard on a real multirun (the shared grid sweep: quant.bits x sched x 2 seeds):
the dry-run spec is the wandb-workspaces wire model with the panels for that sweep's keys."""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from conftest import PY, ROOT


def dashboard(*args, env=None):
    e = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_API_KEY", "WANDB_SERVICE", "WANDB__SERVICE"))}
    e.update({"PYTHONPATH": str(ROOT / "src"), "WANDB_MODE": "offline", **(env or {})})
    return subprocess.run([PY, "-m", "qsnn.study.dashboard", *args], capture_output=True, text=True, env=e, timeout=120)


@pytest.fixture(scope="module")
def spec(grid_sweep, tmp_path_factory):
    f = tmp_path_factory.mktemp("dash") / "dashboard.json"
    r = dashboard("--sweep-dir", str(grid_sweep), "--project", "qsnn-test", "--entity", "me", "--dry-run", str(f))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "quant.bits, sched" in r.stdout
    return json.loads(f.read_text())


def grids(doc):
    """(run set, panels) of every panel grid in the report spec."""
    out = []
    for b in doc["spec"]["spec"]["blocks"]:
        if b["type"] == "panel-grid":
            m = b["metadata"]
            out.append((m["runSets"][0], m["panelBankSectionConfig"]["panels"]))
    return out


def filters(runset):
    return {(f["key"]["section"], f["key"]["name"], f["op"], f["value"]) for f in runset["filters"]["filters"]}


def grouping(runset):
    return [g["name"] for g in runset["grouping"]]


def test_spec_is_the_sweeps_group_and_keys(spec, grid_sweep):
    assert (spec["entity"], spec["project"], spec["group"]) == ("me", "qsnn-test", grid_sweep.name)
    assert spec["keys"] == ["quant.bits", "sched"]
    assert spec["config_keys"] == {"quant.bits": "quant.bits", "sched": "choices.sched"}
    assert spec["spec"]["project"] == {"name": "qsnn-test", "entityName": "me"}
    for runset, _ in grids(spec):  # every panel reads only this sweep's jobs, never the report run
        assert {("run", "group", "=", grid_sweep.name), ("run", "jobType", "!=", "report")} <= filters(runset)


def test_val_accuracy_grouped_by_schedule_faceted_by_bits(spec):
    facets = {}
    for runset, panels in grids(spec):
        bits = [f[3] for f in filters(runset) if f[:2] == ("config", "quant.bits")]
        if bits:
            facets[bits[0]] = (runset, panels)
    assert set(facets) == {4, 32}
    for runset, panels in facets.values():
        assert grouping(runset) == ["choices.value.sched"]
        (p,) = panels
        assert p["viewType"] == "Run History Line Plot"
        assert (p["config"]["xAxis"], p["config"]["metrics"], p["config"]["groupAgg"]) == ("epoch", ["val/acc"], "mean")


def test_test_acc_lr_parallel_coordinates_and_cost_panels(spec, grid_sweep):
    panels = {(p["viewType"], p["config"].get("chartTitle")): (runset, p) for runset, ps in grids(spec) for p in ps}
    runset, bar = panels[("Bar Chart", "test/acc")]
    assert bar["config"]["metrics"] == ["test/acc"]
    assert grouping(runset) == ["quant.value.bits", "choices.value.sched"]
    _, lr = panels[("Run History Line Plot", "learning rate")]
    assert lr["config"]["xAxis"] == "trainer/global_step" and lr["config"]["metrics"] == ["lr-Adam"]
    _, pc = panels[("Parallel Coordinates Plot", "swept keys -> test/acc")]
    assert [c["accessor"] for c in pc["config"]["columns"]] == \
        ["config:quant.value.bits", "config:choices.value.sched", "summary:test/acc"]
    costs = {k for p in grid_sweep.glob("*/summary.json") for k in json.loads(p.read_text())["metrics"]
             if k.startswith("cost/")}
    assert costs and costs == {title for (kind, title) in panels if kind == "Bar Chart" and title.startswith("cost/")}
    assert ("Scatter Plot", "test/acc vs footprint") in panels


def test_runs_log_the_group_choices_the_dashboard_groups_by(grid_sweep):
    import yaml

    hp = yaml.safe_load(next((grid_sweep / "0").rglob("hparams.yaml")).read_text())
    assert hp["choices"]["sched"] in ("constant", "cosine") and hp["quant"]["bits"] in (4, 32)


def test_errors_are_one_line(grid_sweep, tmp_path):
    r = dashboard("--sweep-dir", str(tmp_path))
    assert r.returncode == 1 and r.stderr.startswith("error: no summary.json") and r.stderr.count("\n") == 1
    r = dashboard("--sweep-dir", str(grid_sweep), env={"HOME": str(tmp_path), "NETRC": str(tmp_path / "none")})
    assert r.returncode == 1 and r.stderr.startswith("error: saving the W&B report needs W&B online")
    assert "--dry-run" in r.stderr and r.stderr.count("\n") == 1

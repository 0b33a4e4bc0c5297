"""A real multirun through the joblib launcher (one setting fails), then src/report.py on it."""
from __future__ import annotations

import csv
import json
import statistics
import subprocess

import pytest

from conftest import PY, ROOT, TINY, run_script


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """quant.bits=4 trains (seeds 1, 1, 2); quant.bits=9 is rejected by validation for every seed."""
    d = tmp_path_factory.mktemp("sweep") / "multirun"
    r = run_script("train.py", "-m", "launcher=joblib", "hydra.launcher.n_jobs=2", "quant.bits=4,9", "seed=1,1,2",
                   "logger=csv", "torch_threads=1", f"hydra.sweep.dir={d}",
                   f"paths.log_dir={d.parent / 'logs'}", *TINY, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]  # failed jobs never stop the multirun
    return d


@pytest.fixture(scope="module")
def report(sweep):
    r = run_script("report.py", str(sweep), "--target", "0.05", timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def ok_summaries(sweep):
    out = [json.loads(p.read_text()) for p in sweep.glob("*/summary.json")]
    return [s for s in out if s["status"] == "ok"]


def test_finished_jobs_survive_the_failures(sweep):
    ok = ok_summaries(sweep)
    assert sorted(s["seed"] for s in ok) == [1, 1, 2]
    assert all("quant.bits=4" in s["overrides"] and f"seed={s['seed']}" in s["overrides"] for s in ok)


def test_same_seed_reproduces_the_same_metrics(sweep):
    a, b = [s for s in ok_summaries(sweep) if s["seed"] == 1]
    for k in ("val/acc_best", "test/acc", "train/loss", "val/loss"):
        assert a["metrics"][k] == b["metrics"][k], k
    assert a["lr"] == b["lr"]
    no_time = [[{k: v for k, v in e.items() if not k.startswith("time/")} for e in s["epochs"]] for s in (a, b)]
    assert no_time[0] == no_time[1]  # every epoch's metrics, wall times aside


def test_csv_rows_match_the_run_files(sweep, report):
    rows = list(csv.DictReader(open(sweep / "report.csv")))
    by_bits = {r["quant.bits"]: r for r in rows}
    assert set(by_bits) == {"4", "9"}  # grouped by what varies (seed excluded)
    ok = ok_summaries(sweep)
    test = [s["metrics"]["test/acc"] for s in ok]
    val = [s["metrics"]["val/acc_best"] for s in ok]
    r4 = by_bits["4"]
    assert (int(r4["n_ok"]), int(r4["n_failed"])) == (3, 0)
    assert float(r4["test_acc_mean"]) == pytest.approx(statistics.mean(test), abs=1e-5)
    assert float(r4["test_acc_std"]) == pytest.approx(statistics.stdev(test), abs=1e-5)
    assert float(r4["val_acc_best_mean"]) == pytest.approx(statistics.mean(val), abs=1e-5)
    assert float(r4["test_acc_ci_low"]) <= float(r4["test_acc_mean"]) <= float(r4["test_acc_ci_high"])
    assert (int(by_bits["9"]["n_ok"]), int(by_bits["9"]["n_failed"])) == (0, 3)


def test_markdown_lists_failures_with_overrides_and_error(sweep, report):
    md = (sweep / "report.md").read_text()
    assert "6 jobs, 3 ok, 3 failed" in md
    fails = [ln for ln in md.splitlines() if "quant.bits=9" in ln and "ConfigError" in ln]
    assert len(fails) == 3, md
    assert any("seed=2" in ln for ln in fails)
    assert md in report.stdout


def test_plots_are_valid_images(sweep, report):
    import matplotlib.image as mpimg

    for name in ("val_acc_vs_epoch.png", "lr_vs_step.png", "test_acc_by_setting.png"):
        img = mpimg.imread(sweep / name)
        assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 300, name
        assert img.std() > 0.01, f"{name} is blank"


def test_report_cli_errors_and_flags(tmp_path):
    r = subprocess.run([PY, str(ROOT / "src" / "report.py"), str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 1 and "no summary.json" in r.stderr
    r = subprocess.run([PY, str(ROOT / "src" / "report.py")], capture_output=True, text=True)
    assert r.returncode == 2 and "--wandb-project" in r.stderr
    import sys

    sys.path.insert(0, str(ROOT / "src"))
    from report import parse_args

    a = parse_args(["--wandb-project", "me/qsnn", "--wandb-group", "g", "--out", str(tmp_path), "--by", "sched"])
    assert (a.wandb_project, a.wandb_group, a.by) == ("me/qsnn", "g", "sched")

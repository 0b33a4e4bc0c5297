"""Real multiruns through the joblib launcher, then src/report.py on them: one where a setting
fails, and the shared grid sweep (two keys, two seeds) for CIs, chance, costs, html and W&B."""
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


# ----------------------------------------------------------------------------- the grid sweep (two keys, two seeds)
@pytest.fixture(scope="module")
def grid_report(grid_sweep, tmp_path_factory):
    """src/report.py --wandb on the grid sweep: report files in out/, one offline W&B run of job_type report."""
    out = tmp_path_factory.mktemp("grid_report")
    r = run_script("report.py", str(grid_sweep), "--out", str(out), "--target", "0.05", "--wandb", timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return out, r


def grid_summaries(sweep):
    return [json.loads(p.read_text()) for p in sorted(sweep.glob("*/summary.json"))]


def test_accuracy_cis_stay_in_0_100_for_two_seed_settings(grid_sweep, grid_report):
    from qsnn.study import stats

    rows = list(csv.DictReader(open(grid_report[0] / "report.csv")))
    assert len(rows) == 4 and all(int(r["n_ok"]) == 2 for r in rows)
    for r in rows:
        for p in ("test_acc", "val_acc_best"):
            lo, m, hi = (float(r[f"{p}_{k}"]) for k in ("ci_low", "mean", "ci_high"))
            assert 0.0 <= lo <= m <= hi <= 1.0, (r["setting"], p, lo, m, hi)
    # the unclipped t-CI of these 2-seed settings leaves [0, 1]: the clip is what keeps them inside
    raw = [stats.summarize([s["metrics"]["test/acc"] for s in grid_summaries(grid_sweep)
                            if f"quant.bits={b}" in s["overrides"] and f"sched={sc}" in s["overrides"]])
           for b in (4, 32) for sc in ("constant", "cosine")]
    assert any(s["ci_low"] < 0 or s["ci_high"] > 1 for s in raw)
    md = (grid_report[0] / "report.md").read_text()
    assert "clipped to [0, 100]" in md and "[-" not in md.split("## ")[0]  # no negative bound in the table


def test_cost_metrics_and_chance_reach_the_table(grid_sweep, grid_report):
    rows = {r["setting"]: r for r in csv.DictReader(open(grid_report[0] / "report.csv"))}
    s = [x for x in grid_summaries(grid_sweep) if "quant.bits=4" in x["overrides"] and "sched=cosine" in x["overrides"]]
    r = rows["quant.bits=4,sched=cosine"]
    for key in ("cost/footprint_bytes", "cost/synops", "cost/activation_sparsity"):
        want = statistics.mean(x["metrics"][key] for x in s)
        assert float(r[f"{key.replace('/', '_')}_mean"]) == pytest.approx(want, rel=1e-5), key
    assert float(r["chance"]) == pytest.approx(1 / s[0]["num_classes"])
    md = (grid_report[0] / "report.md").read_text()
    assert "| footprint (B) | synops/sample |" in md and "chance (10.0% = 1/10 classes)" in md


def test_heatmap_cost_plot_and_self_contained_html(grid_report):
    import base64
    import re

    import matplotlib.image as mpimg

    out = grid_report[0]
    for name in ("test_acc_heatmap.png", "test_acc_vs_cost.png", "test_acc_by_setting.png", "bit_gap.png"):
        img = mpimg.imread(out / name)
        assert img.ndim == 3 and img.shape[0] > 200 and img.std() > 0.01, name
    html = (out / "report.html").read_text()
    srcs = re.findall(r'<img[^>]*src="([^"]+)"', html)
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert len(srcs) == len(pngs) >= 6 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert all(base64.b64decode(s.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n" for s in srcs)
    assert html.count("<table>") >= 3 and "both at chance level" in html


def test_gaps_between_chance_level_settings_are_marked(grid_sweep, grid_report):
    means = [float(r["test_acc_mean"]) for r in csv.DictReader(open(grid_report[0] / "report.csv"))]
    assert max(means) < 0.1 + 0.1 * 0.9  # a few batches: every setting sits at chance level (10 classes)
    md = (grid_report[0] / "report.md").read_text()
    gap_rows = [ln for ln in md.split("minus 4-bit test accuracy")[1].split("## ")[0].splitlines()
                if ln.startswith(("| constant", "| cosine"))]
    assert len(gap_rows) == 2 and all("both at chance level: not a meaningful gap" in ln for ln in gap_rows)


def test_gap_notes_tell_chance_from_learning():
    """bit_gap on run records: a learned 32-bit against a chance-level 4-bit is marked on one side only."""
    from qsnn.study.report_tables import bit_gap

    def run(bits, sched, seed, acc):
        return {"status": "ok", "num_classes": 10, "seed": seed, "metrics": {"test/acc": acc},
                "params": {"quant.bits": str(bits), "sched": sched}}

    runs = [run(32, "a", 1, 0.95), run(32, "a", 2, 0.96), run(4, "a", 1, 0.10), run(4, "a", 2, 0.12),
            run(32, "b", 1, 0.11), run(32, "b", 2, 0.09), run(4, "b", 1, 0.10), run(4, "b", 2, 0.12),
            run(32, "c", 1, 0.95), run(32, "c", 2, 0.97), run(4, "c", 1, 0.90), run(4, "c", 2, 0.93)]
    notes = {g["by"]: g["note"] for g in bit_gap(runs, ["quant.bits", "sched"], "sched")}
    assert notes == {"a": "4-bit at chance level", "b": "both at chance level: not a meaningful gap", "c": ""}


def test_report_logged_to_the_sweeps_wandb_group(grid_sweep, grid_report):
    from qsnn.run.wandb_offline import find_run_files, iter_records

    out, r = grid_report
    files = find_run_files(out / "wandb")
    assert len(files) == 1 and "wandb sync" in r.stdout
    run, logged = None, {}
    for rec in iter_records(files[0]):  # W&B's own record protos, read from the offline run file
        if rec.WhichOneof("record_type") == "run":
            run = rec.run
        elif rec.WhichOneof("record_type") == "history":
            for it in rec.history.item:
                key = it.key or "/".join(it.nested_key[:-1])
                logged.setdefault(key, {})[it.nested_key[-1] if it.nested_key else ""] = json.loads(it.value_json)
    assert (run.run_group, run.job_type) == (grid_sweep.name, "report")
    table = logged["report/settings"]
    assert table["_type"] == "table-file" and table["nrows"] == 4
    data = json.loads((files[0].parent / "files" / table["path"]).read_text())
    rows = list(csv.DictReader(open(out / "report.csv")))
    col = data["columns"].index("setting")
    assert sorted(x[col] for x in data["data"]) == sorted(r["setting"] for r in rows)
    assert {k for k, v in logged.items() if v.get("_type") == "image-file"} == \
        {f"report/{p.stem}" for p in out.glob("*.png")}


def test_heatmap_colours_span_the_cells_and_epoch_ticks_are_whole_numbers(tmp_path, monkeypatch):
    """Cells at 96.3-99.5% on a 0-100 scale were all one colour: the scale is the cells' range."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from qsnn.study import report_plots

    assert report_plots.color_range([96.3, 97.0, 99.5]) == (95.8, 100.0)
    assert report_plots.color_range([10.0, 60.0]) == (7.5, 62.5)
    runs = [{"status": "ok", "params": {"quant.bits": b, "sched": "constant"},
             "epochs": [{"epoch": e, "val/acc": 0.5 + 0.01 * e} for e in range(7)]} for b in ("4", "32")]
    captured = []  # the figure as drawn, before it is saved and closed
    monkeypatch.setattr(report_plots, "_save", lambda fig, path: captured.append(fig) or path)
    report_plots.plot_val_curves(runs, ["quant.bits", "sched"], "sched", None, tmp_path)
    ticks = [t for ax in captured[0].axes for t in ax.get_xticks() if 1 <= t <= 7]
    assert ticks and all(float(t).is_integer() for t in ticks)
    plt.close("all")

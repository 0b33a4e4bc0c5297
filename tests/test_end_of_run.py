"""What a user sees: the default training's output (results table, W&B upload command, nothing on
stderr but Lightning's few status lines), its job log and W&B run, and --help."""
from __future__ import annotations

import json
import re
from pathlib import Path

from conftest import CONF, run_script
from qsnn.run.console import pct
from qsnn.run.wandb_offline import find_run_files, iter_records, read_run

# stderr lines a default run may print: Lightning saying why fit stopped and which checkpoint it tests
STDERR_ALLOWED = (
    r"`Trainer\.fit` stopped: ",
    r"Restoring states from the checkpoint path at ",
    r"Loaded model weights from the checkpoint at ",
)
TINY_DEFAULT = ["trainer.max_epochs=2", "trainer.limit_train_batches=3", "trainer.limit_val_batches=2",
                "trainer.limit_test_batches=2", "torch_threads=1"]


def unexpected_stderr(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip() and not re.match("|".join(STDERR_ALLOWED), line)]


def test_default_run_is_quiet_and_ends_with_its_results(tmp_path):
    r = run_script("train.py", *TINY_DEFAULT, f"paths.log_dir={tmp_path / 'logs'}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert unexpected_stderr(r.stderr) == []  # new library noise lands here: silence it in qsnn/quiet.py
    (run_dir,) = (tmp_path / "logs" / "train" / "runs").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    m, out = summary["metrics"], r.stdout

    # the table, with summary.json's numbers
    assert out.count("CONFIG") == 1 and "v_num" not in out
    assert re.search(rf"test accuracy +{re.escape(pct(m['test/acc']))} +loss {m['test/loss']:.4f}", out)
    best = max(summary["epochs"], key=lambda e: e["val/acc"])
    assert re.search(rf"best val accuracy +{re.escape(pct(best['val/acc']))} +epoch {best['epoch']} \(2 epochs", out)
    assert f"{m['cost/synops']:,.0f}" in out and pct(m["cost/activation_sparsity"]) in out
    assert f"start-up {summary['startup_s']:.1f}" in out and f"fit {summary['fit_s']:.1f}" in out
    assert f"output dir: logs/train/runs/{run_dir.name}" in out
    epoch_lines = [line for line in out.splitlines() if re.match(r"epoch +\d+ +[\d.]+s +val/acc", line)]
    assert len(epoch_lines) == 2  # whole lines (through the bar's console), one per epoch

    # the W&B run: the printed sync command names it, and its summary has the results
    (run_file,) = find_run_files(run_dir)
    offline_dir = run_file.parent.relative_to(tmp_path)
    assert f"upload it:  wandb sync {offline_dir}\n" in out
    assert summary["wandb"]["mode"] == "offline" and Path(summary["wandb"]["dir"]) == run_file.parent
    w = read_run(run_file)
    assert w["summary"]["test/acc"] == m["test/acc"] and w["summary"]["cost/synops"] == m["cost/synops"]
    assert w["summary"]["val/acc"] == {"max": best["val/acc"]}  # define_metric: the best epoch, not the last
    assert w["summary"]["time/fit_s"] == summary["fit_s"] and w["summary"]["status"] == "ok"
    assert w["name"] == ",".join(sorted([*TINY_DEFAULT, f"paths.log_dir={tmp_path / 'logs'}"]))
    metrics = {rec.metric.name or rec.metric.glob_name: rec.metric.step_metric
               for rec in iter_records(run_file) if rec.WhichOneof("record_type") == "metric"}
    assert metrics["val/acc"] == metrics["train/loss"] == metrics["time/epoch_s"] == "epoch"
    lr_steps = [rec for rec in iter_records(run_file) if rec.WhichOneof("record_type") == "history"
                and any((i.key or "/".join(i.nested_key)) == "lr-Adam" for i in rec.history.item)]
    assert len(lr_steps) == 2 * 3  # the LR of every step
    (code,) = [rec.artifact for rec in iter_records(run_file) if rec.WhichOneof("record_type") == "artifact"]
    files = {c.path for c in code.manifest.contents}
    assert code.type == "code" and {"train.py", "qsnn/run/runner.py", "qsnn/run/console.py"} <= files

    # Hydra's job log is in the run dir, not in the current directory
    assert (run_dir / "train.log").is_file() and not (tmp_path / "train.log").exists()


def test_help_lists_groups_options_and_examples(monkeypatch, capsys):
    """src/train.py --help, composed in-process from the real conf/ (the script's imports cost ~10 s)."""
    import hydra
    import pytest
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    app = hydra.main(version_base="1.3", config_path=str(CONF), config_name="train.yaml")(lambda cfg: None)
    monkeypatch.setattr("sys.argv", ["train.py", "--help"])
    with pytest.raises(SystemExit) as e:
        app()
    assert e.value.code in (0, None)
    out = capsys.readouterr().out
    for line in ("logger: csv, none, tensorboard, wandb", "debug: fast_dev_run, overfit, profiler",
                 "callbacks: default, none", "quant: sigmoid_sum, uniform"):
        assert line in out
    assert out.count("python src/train.py") >= 3 and "--shell-completion" in out


def test_sweep_table_marks_failed_and_missing_jobs(tmp_path, capsys, monkeypatch):
    """Jobs as summary.json leaves them: ok, failed (before training), and killed (no summary.json)."""
    from qsnn.run.console import print_sweep_summary

    monkeypatch.chdir(tmp_path)
    sweep = tmp_path / "multiruns" / "x"
    for num, status, metrics in (("0", "ok", {"test/acc": 0.8125}), ("1", "failed", {}), ("2", None, None),
                                 ("10", "ok", {"test/acc": 0.5})):
        (sweep / num / ".hydra").mkdir(parents=True)
        (sweep / num / ".hydra" / "overrides.yaml").write_text("[]\n")  # Hydra writes it as a job starts
        if status:
            (sweep / num / "summary.json").write_text(json.dumps(
                {"status": status, "overrides": [f"quant.bits={4 + int(num)}", "seed=1"], "metrics": metrics,
                 "epochs": [{"epoch": 0, "val/acc": 0.5}, {"epoch": 1, "val/acc": 0.75}], "fit_s": 3.25}))
    (sweep / "report.md").write_text("# report\n")
    print_sweep_summary(sweep)
    out = capsys.readouterr().out
    assert re.search(r"\n +0 +quant\.bits=4 +ok +81\.25 % +75\.00 % +3\.2", out)
    assert re.search(r"\n +1 +quant\.bits=5 +failed +- +75\.00 %", out)
    assert re.search(r"\n +2 +no summary\.json", out)
    assert re.search(r"\n +2 +no", out).start() < re.search(r"\n +10 +quant", out).start()  # natural order
    assert "seed=1" not in out  # the same in every job: not a column's worth
    assert "report:     multiruns/x/report.md" in out and "wandb sync" not in out


def test_sweep_table_lists_nested_jobs_of_this_multirun_only(tmp_path, capsys):
    """A study nests job dirs (<phase>/<arm>/s<seed>) and re-launches into the same sweep dir."""
    import os
    import time

    from qsnn.run.console import print_sweep_summary

    sweep = tmp_path / "study"
    for rel, acc in (("tune/a/s1", 0.25), ("confirm/a/s2", 0.5)):
        (sweep / rel / "wandb" / "offline-run-1-x").mkdir(parents=True)
        (sweep / rel / "summary.json").write_text(json.dumps(
            {"status": "ok", "overrides": [f"seed={rel[-1]}"], "metrics": {"test/acc": acc},
             "wandb": {"dir": str(sweep / rel / "wandb" / "offline-run-1-x"), "url": None}}))
    old = sweep / "tune" / "a" / "s1" / "summary.json"
    os.utime(old, (time.time() - 3600, time.time() - 3600))  # an earlier phase
    print_sweep_summary(sweep, since=time.time() - 60)
    out = capsys.readouterr().out
    assert "confirm/a/s2" in out and "50.00 %" in out and "tune/a/s1" not in out
    assert f"wandb sync {sweep}/*/*/*/wandb/offline-run-*" in out

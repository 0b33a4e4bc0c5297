"""src/report.py on awkward inputs: a summary.json holding `null`, and --by with a key no job has."""
from __future__ import annotations

import json
import sys

from conftest import ROOT

sys.path.insert(0, str(ROOT / "src"))
from report import main  # noqa: E402  (src/report.py, the entry point)


def job(d, n, bits, acc):
    (d / str(n)).mkdir(parents=True)
    (d / str(n) / "summary.json").write_text(json.dumps({
        "status": "ok", "overrides": [f"quant.bits={bits}", f"seed={n}"], "choices": {"data": "digits"}, "seed": n,
        "bits": bits, "metrics": {"test/acc": acc, "val/acc": acc, "val/acc_best": acc},
        "epochs": [{"epoch": 0, "val/acc": acc, "train/loss": 1.0}], "lr": [0.005]}))


def test_null_summary_is_listed_as_failed(tmp_path, capsys):
    d = tmp_path / "sweep"
    for n, bits, acc in ((0, 4, 0.8), (1, 32, 0.9), (2, 4, 0.82), (3, 32, 0.88)):
        job(d, n, bits, acc)
    (d / "4").mkdir()
    (d / "4" / "summary.json").write_text("null")
    assert main([str(d), "--no-plots"]) == 0
    md = (d / "report.md").read_text()
    assert "summary.json holds null" in md


def test_by_a_key_no_job_has_is_one_error(tmp_path, capsys):
    d = tmp_path / "sweep"
    for n, bits, acc in ((0, 4, 0.8), (1, 32, 0.9)):
        job(d, n, bits, acc)
    assert main([str(d), "--by", "quant.bitz", "--no-plots"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --by quant.bitz: no job has this key")
    assert "quant.bits" in err[0]  # the keys there are


def test_unreadable_and_metricless_summaries_are_rows_with_one_warning_each(tmp_path, capsys):
    d = tmp_path / "sweep"
    for n, bits, acc in ((0, 4, 0.8), (1, 32, 0.9), (2, 4, 0.82), (3, 32, 0.88)):
        job(d, n, bits, acc)
    bad = {"4": b"\xff\xfe{\x00 not utf-8", "5": b'{"status": "ok", "over', "6": b'{"status": "ok", "overrides": []}'}
    for n, content in bad.items():
        (d / n).mkdir()
        (d / n / "summary.json").write_bytes(content)
    assert main([str(d), "--no-plots"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and "Traceback" not in "\n".join(err), err
    for line, n, status in zip(err, bad, ("unreadable", "unreadable", "no metrics")):
        assert line.startswith(f"warning: {d / n / 'summary.json'}: ") and line.endswith(f"listed as {status!r}")
    assert "not UTF-8" in err[0] and "not readable JSON" in err[1]
    md = (d / "report.md").read_text()
    assert "7 jobs, 4 ok, 0 failed, 3 unreadable or without metrics" in md  # not counted as ok
    for n, status in zip(bad, ("unreadable", "unreadable", "no metrics")):
        assert f"| {d / n} |  | {status}: " in md

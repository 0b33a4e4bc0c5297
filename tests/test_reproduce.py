"""src/reproduce.py: one line per missing dataset; with (synthetic) MNIST files, a real run and
the table with the reference figures from src/reproduce.yaml."""
from __future__ import annotations

import importlib.util

import yaml

from conftest import ROOT
from qsnn.data.synthetic_idx import write_mnist_like


def reproduce():
    spec = importlib.util.spec_from_file_location("reproduce", ROOT / "src" / "reproduce.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_facts_name_their_sources():
    facts = yaml.safe_load((ROOT / "src" / "reproduce.yaml").read_text())
    assert set(facts) == {"mnist", "fmnist", "dvsgesture"}
    for spec in facts.values():
        assert (ROOT / "conf" / "experiment" / f"{spec['experiment']}.yaml").is_file()
        assert spec["paper_source"] and set(spec["paper_test_acc"]) == {32, 4}
        assert not spec.get("reference_code") or spec["reference_code"]["source"]


def test_without_data_one_line_per_dataset(tmp_path, capsys):
    assert reproduce().main(["--data-root", str(tmp_path), "--out", str(tmp_path / "out")]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "no data" in ln]
    assert [ln.split(":")[0] for ln in lines] == ["mnist", "fmnist", "dvsgesture"]
    assert "train-images-idx3-ubyte" in lines[0] and "FashionMNIST" in lines[1] and "DVSGesture" in lines[2]
    assert not (tmp_path / "out").exists()  # nothing ran


def test_with_mnist_files_runs_the_recipe_and_prints_the_table(tmp_path, capsys):
    write_mnist_like(tmp_path)
    rc = reproduce().main(["--data-root", str(tmp_path), "--datasets", "mnist", "--bits", "4", "--epochs", "1",
                           "--num-steps", "2", "--threads", "1", "--out", str(tmp_path / "out"),
                           "data.batch_size=32", "callbacks.progress_bar=null"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "budget per run: 1 epoch(s), T=2" in out
    row = next(ln for ln in out.splitlines() if ln.startswith("| mnist | 4 |"))
    ours, paper, ref = (c.strip() for c in row.split("|")[3:6])
    assert 0 <= float(ours) <= 100 and paper == "-" and ref == "98.28"  # reference code: issue 16's figure
    assert "arXiv:2202.07221" in out
    summary = yaml.safe_load((tmp_path / "out" / "mnist_bits4" / "summary.json").read_text())
    assert summary["status"] == "ok" and "data.val_size" not in " ".join(summary["overrides"])

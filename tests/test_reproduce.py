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


def test_one_flat_dir_is_never_two_datasets(tmp_path, capsys):
    """Real MNIST files flat in one dir: under --data-root they are neither MNIST nor Fashion-MNIST (one
    line each saying where to put them or which flag names them); given as the root of both, one error."""
    write_mnist_like(tmp_path / "flat")
    assert reproduce().main(["--data-root", str(tmp_path / "flat"), "--datasets", "mnist", "fmnist",
                             "--out", str(tmp_path / "out")]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    assert [ln.split(":")[0] for ln in lines] == ["mnist", "fmnist"] and all("no data, skipped" in ln for ln in lines)
    assert "--mnist-root" in lines[0] and "--fmnist-root" in lines[1]
    assert reproduce().main(["--mnist-root", str(tmp_path / "flat"), "--fmnist-root", str(tmp_path / "flat"),
                             "--datasets", "mnist", "fmnist", "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: ConfigError: mnist and fmnist would both train on "
                                               f"{(tmp_path / 'flat').resolve()}")
    assert not (tmp_path / "out").exists()  # nothing trained


def test_with_mnist_files_runs_the_recipe_and_prints_the_table(tmp_path, capsys):
    """--mnist-root names a flat dir MNIST's: mnist trains on its files (printed); fmnist, under the same
    --data-root, is refused, not trained."""
    write_mnist_like(tmp_path)
    rc = reproduce().main(["--mnist-root", str(tmp_path), "--data-root", str(tmp_path), "--datasets", "mnist",
                           "fmnist", "--bits", "4", "--epochs", "1", "--num-steps", "2", "--threads", "1",
                           "--out", str(tmp_path / "out"), "data.batch_size=32", "callbacks.progress_bar=null"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "budget per run: 1 epoch(s), T=2" in out
    assert "fmnist: no data, skipped" in out and not (tmp_path / "out" / "fmnist_bits4").exists()
    files = ", ".join(sorted(f.name for f in tmp_path.glob("*-ubyte*")))
    assert f"mnist: trains on {tmp_path.resolve()} ({files})" in out
    row = next(ln for ln in out.splitlines() if ln.startswith("| mnist | 4 |"))
    ours, paper, ref = (c.strip() for c in row.split("|")[3:6])
    assert 0 <= float(ours) <= 100 and paper == "-" and ref == "98.28"  # reference code: issue 16's figure
    assert "arXiv:2202.07221" in out
    summary = yaml.safe_load((tmp_path / "out" / "mnist_bits4" / "summary.json").read_text())
    assert summary["status"] == "ok" and "data.val_size" not in " ".join(summary["overrides"])

"""One table of bad inputs. Each row must end in a clear error naming the key or file (or a clean
recovery), and a finished run that was there before must come out byte-identical.

Config rows go through the real composition (conftest.make_cfg) and runner.train() pointed at
that finished run with resume=true; data, checkpoint, divergence and W&B rows train in-process;
SIGTERM and a sweep with a failing job run the real src/train.py. SIGKILL mid-epoch + resume is
tests/test_resume.py; a corrupt or partial frame cache is tests/test_events.py (rebuilt).
"""
from __future__ import annotations

import hashlib
import json
import resource
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import open_dict

from conftest import CONF, PY, ROOT, TINY, compose_cfg
from qsnn.errors import CheckpointError, CheckpointWriteError, ConfigError, DataFileError, Diverged
from qsnn.data.idx import IDX_FILES
from qsnn.run.resume import check_output_dir
from qsnn.run.runner import train
from test_resume import job_env, wandb_status

FAST = [*TINY, "logger=csv"]
MNIST = ["data=mnist", "data.flat_root=true", "data.val_size=10", "data.batch_size=16", "data.num_steps=4"]
GROUPS = sorted(d.name for d in CONF.iterdir() if d.is_dir())


def fingerprint(run_dir: Path) -> dict[str, str]:
    files = [run_dir / "summary.json", *sorted((run_dir / "checkpoints").iterdir())]
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def job_cfg(out_dir: Path, *overrides: str):
    cfg = compose_cfg(overrides, output_dir=out_dir)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out_dir)
        del cfg.hydra
    return cfg


@pytest.fixture(scope="module")
def prior(tmp_path_factory):
    """A finished run that every row must leave untouched."""
    out = tmp_path_factory.mktemp("prior") / "run"
    assert train(job_cfg(out, *FAST))["status"] == "ok"
    return out, fingerprint(out)


def write_idx(path: Path, arr: np.ndarray) -> None:
    code = {np.dtype(np.uint8): 0x08, np.dtype(">f4"): 0x0D}[arr.dtype]
    head = bytes([0, 0, code, arr.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in arr.shape)
    path.write_bytes(head + arr.tobytes())


def make_mnist(root: Path, n=60) -> Path:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for split, m in (("train", n), ("test", n // 3)):
        labels = (np.arange(m) % 10).astype(np.uint8)
        images = (rng.random((m, 28, 28)) * 60 + labels[:, None, None] * 19).astype(np.uint8)
        write_idx(root / IDX_FILES[f"{split}_images"], images)
        write_idx(root / IDX_FILES[f"{split}_labels"], labels)
    return root


def failed_summary(out_dir: Path) -> dict:
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["status"] == "failed", summary
    return summary


# --- the rows: (kind, argument, what the one-line message must contain) ---------------------------
ROWS = [
    ("validate", "quant.bits=0", "quant.bits=0"),
    ("validate", "quant.bits=9", "quant.bits=9"),
    ("validate", "quant.bits=33", "quant.bits=33"),
    ("validate", "quant.bits=four", "quant.bits='four'"),
    ("validate", "optim.lr=0", "optim.lr=0"),
    ("validate", "optim.lr=-1", "optim.lr=-1"),
    ("validate", "data.num_steps=0", "data.num_steps=0"),
    ("validate", "data.batch_size=0", "data.batch_size=0"),
    ("validate", "model.beta=1.5", "model.beta=1.5"),
    # issue 17: every value names its key (more cases: tests/test_validate.py)
    ("validate", "seed=abc", "seed='abc'"),
    ("validate", "data=randman data.classes=1", "data.classes=1"),
    ("validate", "quant=sigmoid_sum quant.bits=32", "quant.bits=32"),
    ("validate", "trainer.max_epochs=0", "src/eval.py ckpt_path="),
    ("validate", "data.val_fraction=1.5", "data.val_fraction=1.5"),
    ("validate", "model.hidden=[0]", "model.hidden=[0]"),
    ("validate", "sched=cosine_periodic sched.T_max=0", "sched.T_max=0"),
    ("validate", "surrogate.slope=0", "surrogate.slope=0"),
    ("validate", "surrogate=atan surrogate.alpha=-1", "surrogate.alpha=-1"),
    # issue 24: mse_count's target counts int(T * rate) are equal (0 and 0 at T=1): nothing to learn
    ("validate", "data.num_steps=1", "loss.correct_rate=0.8, loss.incorrect_rate=0.2 are not allowed with "
                                     "data.num_steps=1"),
    ("validate", "loss.correct_rate=0.5 loss.incorrect_rate=0.5", "loss.incorrect_rate=0.5"),
    ("mnist_fewer_than_val_size", "data.val_size=100", "data.val_size=100"),
    ("idx_not_28x28", IDX_FILES["train_images"], "expected 28x28"),
    ("labels_out_of_range", IDX_FILES["test_labels"], "outside 0..9"),
    ("split_too_small", "data.val_fraction=0.001", "data.val_fraction=0.001"),
    ("csnn_on_1d_data", "data=randman model=csnn", "model=csnn"),
    ("dead_network", "optim.lr=1e9", "dead network?"),
    *[("compose", f"{g}=no_such_option", f"Could not find '{g}/no_such_option'") for g in GROUPS],
    ("compose", "optim.lrr=0.1", "Could not override 'optim.lrr'"),
    ("compose", "trainer.max_epoch=3", "Could not override 'trainer.max_epoch'"),
    ("compose", "quant.bit=4", "Could not override 'quant.bit'"),
    ("output_dir_reused", "", "already holds a run"),
    ("data_root_missing", "", "data.root="),
    ("idx_truncated", IDX_FILES["train_images"], IDX_FILES["train_images"]),
    ("idx_bad_magic", IDX_FILES["train_labels"], IDX_FILES["train_labels"]),
    ("label_count_mismatch", IDX_FILES["test_labels"], IDX_FILES["test_labels"]),
    ("ckpt_other_model", "model.hidden=[64]", "different model config"),
    ("ckpt_truncated", "", "cannot read checkpoint"),
    ("disk_full_on_checkpoint", "", "write failed"),
    ("nan_during_finetune", "loss.sparsity.weight=1e30", "diverged"),
    ("wandb_online_no_key", "", "logging offline instead"),
    ("sigterm_mid_epoch", "", "interrupted by SIGTERM"),
    ("sweep_with_failing_job", "quant.bits=4,9", "quant.bits=9"),
]


@pytest.mark.parametrize("kind,arg,expect", [pytest.param(*r, id=f"{r[0]}:{r[1]}") for r in ROWS])
def test_bad_input(kind, arg, expect, prior, tmp_path, make_cfg, monkeypatch, caplog):
    prior_dir, prior_print = prior
    out = tmp_path / "run"
    message = ""

    if kind == "validate":  # a typo while resuming the finished run: rejected before anything is touched
        cfg = make_cfg(*FAST, *arg.split(), "resume=true")
        with open_dict(cfg):
            cfg.paths.output_dir = str(prior_dir)
        with pytest.raises(ConfigError) as e:
            train(cfg)
        message = str(e.value)

    elif kind == "compose":  # Hydra's own strict-mode messages, first line names group/key
        with pytest.raises(Exception) as e:
            make_cfg(*FAST, arg)
        message = str(e.value).splitlines()[0] + " " + str(getattr(e.value, "__cause__", ""))

    elif kind == "output_dir_reused":  # same hydra.run.dir, no resume=true: refused (src/train.py)
        with pytest.raises(ConfigError) as e:
            check_output_dir(job_cfg(prior_dir, *FAST))
        message = str(e.value)
        assert str(prior_dir) in message and "resume=true" in message

    elif kind in ("data_root_missing", "idx_truncated", "idx_bad_magic", "label_count_mismatch"):
        root = make_mnist(tmp_path / "mnist") if kind != "data_root_missing" else tmp_path / "nowhere"
        if kind == "idx_truncated":
            (root / arg).write_bytes((root / arg).read_bytes()[:-100])
        elif kind == "idx_bad_magic":
            (root / arg).write_bytes(b"\x12\x34" + (root / arg).read_bytes()[2:])
        elif kind == "label_count_mismatch":
            write_idx(root / arg, np.zeros(3, np.uint8))
        with pytest.raises(DataFileError) as e:
            train(make_cfg(*FAST, *MNIST, f"data.root={root}"))
        message = str(e.value)
        assert str(root) in message
        assert failed_summary(out)["error"].endswith(message.splitlines()[0])

    elif kind in ("mnist_fewer_than_val_size", "idx_not_28x28", "labels_out_of_range", "split_too_small",
                  "csnn_on_1d_data"):  # refused before the model is built or anything trains
        overrides = arg.split() if kind in ("split_too_small", "csnn_on_1d_data") else None
        if overrides is None:
            root = make_mnist(tmp_path / "mnist")
            overrides = [*MNIST, f"data.root={root}"]
            if kind == "mnist_fewer_than_val_size":  # 60 training images
                overrides = [o for o in overrides if not o.startswith("data.val_size")] + [arg]
            elif kind == "idx_not_28x28":
                write_idx(root / arg, np.zeros((60, 32, 32), np.uint8))
            else:
                write_idx(root / arg, (np.arange(20) % 13).astype(np.uint8))  # 20 test images, labels 0..12
        with pytest.raises((ConfigError, DataFileError)) as e:
            train(make_cfg(*FAST, *overrides))
        message = str(e.value)
        assert "\n" not in message
        assert not list(out.glob("checkpoints/*.ckpt"))

    elif kind == "dead_network":  # runs to the end, status ok, and says the network learned nothing
        with caplog.at_level("WARNING", logger="qsnn"):
            summary = train(make_cfg(*FAST, arg, "trainer.max_epochs=2"))
        assert summary["status"] == "ok"
        saved = json.loads((out / "summary.json").read_text())
        assert saved["warnings"] and saved["warnings"] == summary["warnings"]
        assert all(w in caplog.text for w in saved["warnings"])
        message = saved["warnings"][0]
        # the prior run trained 3 batches: its test may sit at chance, but no training epoch looked dead
        assert all(w.startswith("dead network? test accuracy") for w in
                   json.loads((prior_dir / "summary.json").read_text()).get("warnings", []))

    elif kind == "ckpt_other_model":
        ckpt = prior_dir / "checkpoints" / "last.ckpt"
        with pytest.raises(CheckpointError) as e:
            train(make_cfg(*FAST, arg, f"ckpt_path={ckpt}"))
        message = str(e.value)
        assert str(ckpt) in message and "net." in message
        assert failed_summary(out)

    elif kind == "ckpt_truncated":
        ckpt = tmp_path / "half.ckpt"
        ckpt.write_bytes((prior_dir / "checkpoints" / "last.ckpt").read_bytes()[:5000])
        with pytest.raises(CheckpointError) as e:
            train(make_cfg(*FAST, f"ckpt_path={ckpt}"))
        message = str(e.value)
        assert str(ckpt) in message

    elif kind == "disk_full_on_checkpoint":  # a real failing write: the file-size limit, like a full disk
        shutil.copytree(prior_dir, out)
        before = fingerprint(out)
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, hard))  # checkpoints here are ~130 KB
        try:
            with pytest.raises(CheckpointWriteError) as e:
                train(make_cfg(*FAST, "trainer.max_epochs=2", "resume=true"))
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        message = str(e.value)
        assert "last.ckpt" in message or "epoch_" in message
        after = fingerprint(out)
        assert {k: v for k, v in after.items() if k.endswith(".ckpt")} == \
               {k: v for k, v in before.items() if k.endswith(".ckpt")}
        assert not list((out / "checkpoints").glob(".*tmp*"))  # no half-written temp file left behind
        assert failed_summary(out)

    elif kind == "nan_during_finetune":  # the gradient overflows from a checkpoint: stop, save no diverged weights
        with pytest.raises(Diverged) as e:  # a huge sparsity weight from step 0 (NaN values are refused by validation)
            train(make_cfg(*FAST, arg, "loss.sparsity.start=0", "loss.sparsity.end=0", "trainer.max_epochs=2",
                           "logger=wandb", f"ckpt_path={prior_dir / 'checkpoints' / 'last.ckpt'}"))
        message = str(e.value)
        assert "gradient norm is inf" in message
        assert not list((out / "checkpoints").glob("*.ckpt"))  # no checkpoint of the diverged weights
        assert failed_summary(out)["error"].startswith("Diverged")
        (run_dir,) = (out / "wandb").glob("offline-run-*")
        assert wandb_status(run_dir) == "failed"

    elif kind == "wandb_online_no_key":  # no key: W&B raises at once; the run goes on offline, no hang
        monkeypatch.setenv("WANDB_MODE", "online")
        monkeypatch.delenv("WANDB_API_KEY", raising=False)
        monkeypatch.setenv("NETRC", str(tmp_path / "no_netrc"))
        t0 = time.monotonic()
        with caplog.at_level("WARNING", logger="qsnn"):
            summary = train(make_cfg(*TINY, "logger=wandb"))
        assert summary["status"] == "ok" and time.monotonic() - t0 < 240
        message = caplog.text
        assert list((out / "wandb").glob("offline-run-*"))

    elif kind == "sigterm_mid_epoch":  # graceful: stops after the batch, summary says interrupted
        proc = subprocess.Popen([PY, str(ROOT / "src/train.py"), *FAST, "trainer.max_epochs=200",
                                 f"hydra.run.dir={out}", f"paths.log_dir={tmp_path / 'logs'}"],
                                cwd=ROOT, env=job_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        last = out / "checkpoints" / "last.ckpt"
        deadline = time.monotonic() + 240
        while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        err = proc.communicate(timeout=120)[1]
        assert proc.returncode == 143, err[-2000:]
        message = err.strip().splitlines()[-1]
        summary = json.loads((out / "summary.json").read_text())
        assert summary["status"] == "interrupted" and "resume=true" in summary["error"]
        assert "epoch" in torch.load(last, map_location="cpu", weights_only=True)  # complete, loadable

    elif kind == "sweep_with_failing_job":  # the bad job is recorded failed; the sweep goes on
        sweep = tmp_path / "sweep"
        proc = subprocess.run([PY, str(ROOT / "src/train.py"), "-m", arg, *FAST, f"hydra.sweep.dir={sweep}",
                               f"paths.log_dir={tmp_path / 'logs'}"], cwd=ROOT, capture_output=True, text=True,
                              env=job_env(), timeout=400)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert json.loads((sweep / "0" / "summary.json").read_text())["status"] == "ok"
        message = failed_summary(sweep / "1")["error"]
        assert (sweep / "0" / "checkpoints" / "last.ckpt").is_file()

    else:
        raise AssertionError(kind)

    assert expect in message, message
    assert fingerprint(prior_dir) == prior_print  # the earlier finished run is intact


def test_a_run_that_cannot_learn_is_flagged_after_one_epoch(tmp_path, caplog):
    """T=1 through mse_count's population-code path (the config check leaves it alone: its target counts
    scale with the outputs per class): the training loss is exactly 0 from the first epoch and the test
    ends at chance. One epoch is enough for both warnings, in the console and summary.json, alike in a
    single run and in a stacked seed (both call qsnn.run.guard.DeadNetworkMonitor)."""
    from qsnn.stacked.group import train_group

    ov = [*FAST, "data.num_steps=1", "+loss.population_code=true", "+loss.num_classes=10", "torch_threads=1"]
    with caplog.at_level("WARNING", logger="qsnn"):
        alone = train(job_cfg(tmp_path / "alone", *ov))
    assert alone["status"] == "ok" and [e["train/loss"] for e in alone["epochs"]] == [0.0]
    saved = json.loads((tmp_path / "alone" / "summary.json").read_text())["warnings"]
    assert saved == alone["warnings"] and len(saved) == 2 and all(w in caplog.text for w in saved)
    assert saved[0].startswith("dead network? the training loss is exactly 0 for 1 epoch up to epoch 0")
    assert saved[1].startswith("dead network? test accuracy") and "chance 1/10" in saved[1]
    (stacked,) = train_group([job_cfg(tmp_path / "stacked", *ov)], [{"overrides": [], "choices": {}, "job_num": None}])
    assert stacked["status"] == "ok" and stacked["warnings"] == saved


def test_full_disk_message_says_whether_a_previous_checkpoint_is_there(tmp_path):
    """A fresh run whose first checkpoint cannot be written: no "previous checkpoint unchanged" (there
    was none); over an existing checkpoint the same failure says it is unchanged, and it is."""
    from qsnn.run.checkpoint_io import AtomicCheckpointIO

    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    existing = tmp_path / "existing.ckpt"
    existing.write_bytes(b"old")
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, hard))  # a checkpoint here is ~130 KB: like a full disk
    try:
        with pytest.raises(CheckpointWriteError) as fresh:
            train(job_cfg(tmp_path / "run", *FAST))
        with pytest.raises(CheckpointWriteError) as over:
            AtomicCheckpointIO().save_checkpoint({"w": torch.zeros(40_000)}, existing)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert "epoch_000.ckpt: write failed" in str(fresh.value) and str(fresh.value).endswith("no file was written there")
    assert not list((tmp_path / "run" / "checkpoints").glob("*"))
    assert str(over.value).endswith("the previous checkpoint there is unchanged") and existing.read_bytes() == b"old"

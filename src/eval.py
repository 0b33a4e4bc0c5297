"""Evaluate a checkpoint on the test set:

    python src/eval.py ckpt_path=logs/train/runs/<run>/checkpoints/last.ckpt [same overrides as training]
    python src/eval.py ckpt_path=... export=[nir,npz]   # also write model.nir / model_int.npz
"""
from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

import qsnn.run.config  # noqa: F401
from qsnn.errors import USER_ERRORS
from qsnn.run.console import print_run_summary
from qsnn.run.quiet import silence_library_noise
from qsnn.run.runner import evaluate


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval.yaml")
def main(cfg: DictConfig) -> None:
    silence_library_noise(testing_a_checkpoint=True)
    try:
        summary = evaluate(cfg)
    except USER_ERRORS as e:
        print(f"error: {type(e).__name__}: {e}".splitlines()[0], file=sys.stderr)
        sys.exit(1)
    print_run_summary(summary, title="Test of the checkpoint")


if __name__ == "__main__":
    main()

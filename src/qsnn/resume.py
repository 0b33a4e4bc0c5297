"""Continue a job in its own output dir: which checkpoint, which W&B run, which RNG state.

``resume=true`` (or ``ckpt_path=last``) with the job's output dir (``hydra.run.dir=...``, or
``hydra.sweep.dir=...`` for a multirun) continues from ``checkpoints/last.ckpt``. Lightning's
checkpoint restores epoch, optimizer, LR-schedule position and callback states (early
stopping, best checkpoint, history); ``RNGState`` adds the torch/numpy/python RNG, which
Lightning does not restore. The W&B run id lives in ``wandb_run_id`` next to the run so the
resumed job logs to the same W&B run (WandbLogger passes ``resume="allow"``).
"""
from __future__ import annotations

import json
import random
import secrets
import string
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch


class CheckpointError(ValueError):
    """A checkpoint cannot be used for this config (message names the file and the reason)."""


class RNGState(L.Callback):
    """Saves and restores the global torch, numpy and python RNG states with each checkpoint."""

    # plain tensors, lists and ints only: checkpoints must stay loadable with torch.load(weights_only=True)
    def state_dict(self) -> dict[str, Any]:
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        return {"torch": torch.get_rng_state(), "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos,
                                                          has_gauss, gauss], "python": random.getstate()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        torch.set_rng_state(state["torch"])
        kind, keys, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
        random.setstate(state["python"])


def wants_resume(cfg) -> bool:
    return bool(cfg.get("resume")) or cfg.get("ckpt_path") == "last"


def last_checkpoint(out_dir: Path) -> Path | None:
    p = Path(out_dir) / "checkpoints" / "last.ckpt"
    return p if p.is_file() else None


def finished_summary(out_dir: Path, overrides: list[str]) -> dict | None:
    """The job's summary.json if it finished ok with the same overrides (so a re-launched sweep
    skips it); with other overrides (e.g. more trainer.max_epochs) the job goes on from last.ckpt."""
    try:
        summary = json.loads((Path(out_dir) / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    def same(o):
        return sorted(x for x in o if x.split("=")[0].lstrip("+~") not in ("resume", "ckpt_path"))
    ok = summary.get("status") == "ok" and same(summary.get("overrides", [])) == same(overrides)
    return summary if ok else None


def wandb_run_id(out_dir: Path) -> str:
    """The job's W&B run id: read from the output dir, or made and saved there on first use."""
    path = Path(out_dir) / "wandb_run_id"
    if path.is_file() and path.read_text().strip():
        return path.read_text().strip()
    # W&B's own id shape (8 chars of a-z0-9); drawn from the OS, not the seeded RNGs
    run_id = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(run_id + "\n")
    return run_id


def check_checkpoint(path: str | Path, module: torch.nn.Module) -> None:
    """Fail with one line when ``path`` is unreadable or holds weights of another model config."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"ckpt_path={str(path)!r}: no such checkpoint file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
    except Exception as e:  # truncated, not a torch file, or no state_dict
        raise CheckpointError(f"ckpt_path={str(path)!r}: cannot read checkpoint ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''})") from None
    ours = module.state_dict()
    for key, value in ours.items():
        if key not in state:
            raise CheckpointError(f"ckpt_path={str(path)!r} was saved from a different model config: "
                                  f"it has no {key}")
        if tuple(state[key].shape) != tuple(value.shape):
            raise CheckpointError(f"ckpt_path={str(path)!r} was saved from a different model config: "
                                  f"{key} is {list(state[key].shape)} there, {list(value.shape)} here")
    extra = sorted(set(state) - set(ours))
    if extra:
        raise CheckpointError(f"ckpt_path={str(path)!r} was saved from a different model config: "
                              f"it has {extra[0]}, which this model lacks")


def check_output_dir(cfg) -> None:
    """Refuse to start a new run over a previous run's results (same hydra.run.dir/sweep.dir
    without resume=true): that would overwrite its checkpoints and summary."""
    from qsnn.validate import ConfigError

    out_dir = Path(cfg.paths.output_dir)
    if wants_resume(cfg):
        return
    found = [p.relative_to(out_dir) for p in (out_dir / "summary.json", out_dir / "checkpoints" / "last.ckpt")
             if p.is_file()]
    if found:
        raise ConfigError(f"output dir {out_dir} already holds a run ({found[0]}): add resume=true to continue "
                          f"it (a finished run is skipped), or choose another hydra.run.dir / hydra.sweep.dir")

"""Membrane state quantization (quant.state_bits -> snnTorch state_quant): values on the grid, trains."""
from __future__ import annotations

import pytest
import torch

from qsnn.run.runner import train

from qsnn.run.build import build_datamodule, build_net, calibration_batch
from conftest import TINY


@pytest.mark.parametrize("impl", ["fast", "snntorch"])
def test_membrane_lies_on_the_state_grid(make_cfg, impl):
    bits, thr = 3, 1.0
    cfg = make_cfg(f"quant.state_bits={bits}", f"model.threshold={thr}", f"model.impl={impl}")
    dm = build_datamodule(cfg)
    net = build_net(cfg, dm)
    with torch.no_grad():
        _, mem = net(calibration_batch(dm))
    # snnTorch's uniform grid: 2^bits levels from -thr to thr * 1.2
    grid = torch.linspace(-thr, thr * 1.2, 2**bits)
    dist = (mem.reshape(-1, 1) - grid).abs().min(1).values
    assert dist.max() < 1e-6
    assert mem.unique().numel() > 1


def test_state_quantized_net_trains(make_cfg):
    summary = train(make_cfg(*TINY, "logger=csv", "quant.state_bits=4"))
    assert summary["status"] == "ok"
    first, last = summary["epochs"][0], summary["epochs"][-1]
    assert last["train/loss"] == last["train/loss"]  # finite, not NaN
    assert summary["metrics"]["test/acc"] >= 0

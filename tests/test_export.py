"""NIR / npz export of a trained checkpoint, read back and simulated outside the model."""
from __future__ import annotations

import json
import re
from pathlib import Path

import nir
import numpy as np
import pytest
import torch
from snntorch import surrogate

from conftest import TINY
from qsnn.run.console import pct
from test_end_of_run import unexpected_stderr
from qsnn.errors import ConfigError
from qsnn.cost.export import _order, export, simulate, to_nir
from qsnn.nn.models.csnn import csnn
from qsnn.nn.quant.apply import quantize_weights, weight_layers
from qsnn.nn.quant.uniform import UniformSTEQuantizer
from qsnn.run.runner import train
from qsnn.run.build import build_datamodule, build_module


def predict(spikes: torch.Tensor) -> torch.Tensor:
    return spikes.sum(0).argmax(-1)  # the module's spike-count decision


def with_weights(graph: nir.NIRGraph, weights: list[np.ndarray]) -> nir.NIRGraph:
    """The graph with its Affine/Conv weights replaced, in layer order."""
    layers = [graph.nodes[n] for n in _order(graph) if isinstance(graph.nodes[n], (nir.Affine, nir.Conv2d))]
    for node, w in zip(layers, weights, strict=True):
        node.weight = w
    return graph


def test_trained_checkpoint_round_trips_through_nir_and_npz(run, make_cfg, tmp_path):
    summary = train(make_cfg(*TINY, "logger=csv"))  # in-process: one subprocess (eval.py) is enough
    assert summary["metrics"]["cost/footprint_bytes"] < summary["metrics"]["cost/footprint_fp32_bytes"] / 6
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    r = run("eval.py", f"ckpt_path={ckpt}", "export=[nir,npz]")
    assert r.returncode == 0, r.stderr[-2000:]
    out = Path(next(line for line in r.stdout.splitlines() if line.startswith("exported:")).split()[1]).parent
    # eval's end-of-run table shows the numbers of its summary.json
    ev = json.loads((out / "summary.json").read_text())
    assert ev["task"] == "eval" and ev["status"] == "ok" and ev["ckpt_path"] == str(ckpt)
    assert re.search(rf"test accuracy +{re.escape(pct(ev['metrics']['test/acc']))} +loss {ev['metrics']['test/loss']:.4f}",
                     r.stdout), r.stdout[-2000:]
    assert re.search(rf"synaptic ops / sample +{ev['metrics']['cost/synops']:,.0f} ", r.stdout)
    assert unexpected_stderr(r.stderr) == [], r.stderr  # no library noise in eval either
    graph, npz = nir.read(out / "model.nir"), np.load(out / "model_int.npz")

    # the checkpointed 4-bit model, and its predictions on a small test batch
    cfg = make_cfg()
    dm = build_datamodule(cfg)
    dm.setup("test")
    module = build_module(cfg, dm)
    module.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"])
    net = module.net.eval()
    x, _ = dm.on_after_batch_transfer(dm.splits["test"][:32], 0)
    with torch.no_grad():
        spikes, _ = net(x)

    # types, shapes, and the exact quantized weights
    kinds = [type(graph.nodes[n]).__name__ for n in _order(graph)]
    assert kinds == ["Flatten", "Affine", "LIF", "Affine", "LIF"]
    layers = weight_layers(net)
    affines = [graph.nodes[n] for n in _order(graph) if isinstance(graph.nodes[n], nir.Affine)]
    assert [a.weight.shape for a in affines] == [(128, 64), (10, 128)]
    for a, layer in zip(affines, layers):
        assert np.array_equal(a.weight, layer.weight.detach().numpy())
        assert len(np.unique(a.weight)) <= 15  # 4 bits, narrow range
    assert np.asarray(graph.nodes["lif"].v_threshold).shape == (128,)

    # npz: int8 in [-7, 7]; integer x scale is the quantized weight, bit for bit
    ints = [npz[f"stage{i}.layer0.weight_int"] for i in range(2)]
    scales = [npz[f"stage{i}.layer0.scale"] for i in range(2)]
    assert all(w.dtype == np.int8 and np.abs(w).max() <= 7 for w in ints)
    dequant = [w.astype(np.float32) * s for w, s in zip(ints, scales)]
    for w, a in zip(dequant, affines):
        assert np.array_equal(w, a.weight)

    # simulating the file (and the integer weights) gives the model's spikes and predictions
    sim = simulate(graph, x)
    assert torch.equal(sim, spikes)
    assert torch.equal(predict(simulate(with_weights(graph, dequant), x)), predict(spikes))


def test_conv_net_exports_and_simulates(tmp_path):
    net = quantize_weights(csnn([1, 12, 12], 10, surrogate.fast_sigmoid(), channels=[4, 8], kernel_size=3,
                                batchnorm=False), lambda: UniformSTEQuantizer(bits=3, per_channel=True), bits=3)
    with torch.no_grad():  # enough current that the conv layers spike
        for layer in weight_layers(net):
            layer.parametrizations.weight.original.mul_(4)
    paths = export(net, "nir", tmp_path, [1, 12, 12])
    graph = nir.read(paths[0])
    assert [type(graph.nodes[n]).__name__ for n in _order(graph)] == [
        "Conv2d", "AvgPool2d", "LIF", "Conv2d", "AvgPool2d", "LIF", "Flatten", "Affine", "LIF"]
    x = torch.rand(6, 4, 1, 12, 12)
    with torch.no_grad():
        spikes, _ = net.eval()(x)
    assert spikes.sum() > 0
    assert torch.equal(simulate(graph, x), spikes)


def test_export_refuses_what_nir_cannot_say():
    net = csnn([1, 12, 12], 10, surrogate.fast_sigmoid(), channels=[4], kernel_size=3, batchnorm=True)
    with pytest.raises(ValueError, match="BatchNorm"):
        to_nir(net, [1, 12, 12])
    with pytest.raises(ConfigError, match="export='onnx'"):
        export(net, "onnx", Path("/nonexistent"), [1, 12, 12])

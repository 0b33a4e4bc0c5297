"""Hand a trained SpikingNet to neuromorphic tool chains.

- ``nir``: a NIR graph (``nir.write``). Each layer is converted by snnTorch's own mapping
  (``snntorch.export_nir._extract_snntorch_module``: Linear -> Affine/Linear, Conv2d, AvgPool2d,
  Flatten, Leaky -> LIF with tau = dt/(1-beta), r = tau/dt, dt = 1e-4). We chain the nodes
  ourselves because ``snntorch.export_to_nir`` fails type inference on our scalar-parameter
  Leaky layers; we broadcast the LIF parameters to the layer's neuron shape instead. Weights
  are the quantized values exactly (``layer.weight`` under parametrize). snnTorch's discrete
  neuron (beta, threshold, reset mechanism) rides along in each LIF's ``metadata``.
- ``npz``: per weight layer ``<name>.weight_int`` (int8: round(w_q / scale), exact) and
  ``<name>.scale`` (the quantizer's scale: max|w| / (2^(b-1) - 1) per tensor or channel; the
  XNOR scale mean|w| at 1 bit), or ``<name>.weight`` (float32) for full-precision layers;
  ``<name>.bias``; per stage ``stageI.beta`` / ``stageI.threshold``; ``meta`` (JSON: layers,
  bits, reset mechanism).

``simulate(graph, x)`` runs a sequential NIR graph with snnTorch's discrete LIF recurrence in
plain torch; the round-trip tests use it to check an exported file reproduces the model.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import nir
import numpy as np
import torch
import torch.nn.functional as F
from snntorch import Leaky
from snntorch.export_nir import _extract_snntorch_module
from torch import nn
from torch.nn.utils import parametrize

from qsnn.errors import ConfigError

FORMATS = ("nir", "npz")
DT = 1e-4  # snnTorch's NIR time step convention
LAYERS = (nn.Linear, nn.Conv2d, nn.AvgPool2d, nn.Flatten, nn.Dropout)


def _ops(net) -> list[list[nn.Module]]:
    """Per stage, the leaf modules of its op in call order (Dropout dropped: identity at inference)."""
    out = []
    for st in net.stages:
        if st.norm is not None:
            raise ConfigError("NIR has no BatchNorm node: train with model.batchnorm=false to export")
        out.append([m for m in _layers(st.op) if not isinstance(m, nn.Dropout)])
    return out


def _layers(m: nn.Module) -> list[nn.Module]:
    # a parametrized (quantized) layer has children (its quantizer): stop at known layers
    if isinstance(m, LAYERS) or not list(m.children()):
        return [m]
    return [leaf for c in m.children() for leaf in _layers(c)]


@torch.no_grad()
def _neuron_shapes(net, input_shape: Sequence[int]) -> list[tuple[int, ...]]:
    shapes = []
    hooks = [st.op.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape[1:]))) for st in net.stages]
    impl, net.impl = net.impl, "snntorch"  # the op modules are called one step at a time
    try:
        net.eval()
        net(torch.zeros(1, 1, *input_shape))
    finally:
        net.impl = impl
        for h in hooks:
            h.remove()
    return shapes


def _lif(lif, shape) -> nir.LIF:
    node = _extract_snntorch_module(lif)
    full = {k: np.broadcast_to(np.asarray(getattr(node, k), dtype=np.float32), shape).copy()
            for k in ("tau", "r", "v_leak", "v_threshold", "v_reset")}
    meta = {"beta": float(lif.beta.clamp(0, 1)), "threshold": float(lif.threshold),
            "reset_mechanism": lif.reset_mechanism, "dt": DT, "source": "snntorch.Leaky (discrete)"}
    return nir.LIF(**full, metadata=meta)


@torch.no_grad()
def to_nir(net, input_shape: Sequence[int]) -> nir.NIRGraph:
    """Sequential NIR graph input -> (op nodes -> LIF) per stage -> output."""
    shapes = _neuron_shapes(net, input_shape)
    nodes = [nir.Input(input_type={"input": np.array(input_shape)})]
    for ops, st, shape in zip(_ops(net), net.stages, shapes):
        nodes += [_extract_snntorch_module(m) for m in ops]
        nodes.append(_lif(st.lif, shape))
    nodes.append(nir.Output(output_type={"output": np.array(shapes[-1])}))
    return nir.NIRGraph.from_list(*nodes)


def _scale(layer: nn.Module) -> torch.Tensor:
    """The quantizer's scale, by the same expression as ``UniformSTEQuantizer.forward``."""
    q, w = layer.parametrizations.weight[0], layer.parametrizations.weight.original
    dims = q._reduce_dims(w)
    if q.bits == 1:
        return w.abs().mean(dim=dims, keepdim=True)
    return (w.abs().amax(dim=dims, keepdim=True) / (2 ** (q.bits - 1) - 1)).clamp_min(1e-12)


@torch.no_grad()
def integer_weights(net) -> dict[str, np.ndarray]:
    """The npz content (see module docstring)."""
    arrays, layers = {}, []
    for i, ops in enumerate(_ops(net)):
        for j, m in enumerate(x for x in ops if isinstance(x, (nn.Linear, nn.Conv2d))):
            name = f"stage{i}.layer{j}"
            if parametrize.is_parametrized(m, "weight"):
                scale = _scale(m)
                arrays[f"{name}.weight_int"] = torch.round(m.weight / scale).to(torch.int8).numpy()
                arrays[f"{name}.scale"] = scale.float().numpy()
                bits = m.parametrizations.weight[0].bits
            else:
                arrays[f"{name}.weight"] = m.weight.float().numpy()
                bits = 32
            if m.bias is not None:
                arrays[f"{name}.bias"] = m.bias.float().numpy()
            layers.append({"name": name, "type": type(m).__name__, "bits": bits, "shape": list(m.weight.shape)})
        arrays[f"stage{i}.beta"] = np.float32(net.stages[i].lif.beta.clamp(0, 1))
        arrays[f"stage{i}.threshold"] = np.float32(net.stages[i].lif.threshold)
    reset = net.stages[0].lif.reset_mechanism
    arrays["meta"] = np.array(json.dumps({"layers": layers, "reset_mechanism": reset}))
    return arrays


def check_formats(formats: str | Sequence[str]) -> list[str]:
    formats = [formats] if isinstance(formats, str) else list(formats)
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise ConfigError(f"export={bad[0]!r} is not allowed: use {' or '.join(FORMATS)}, or a list: export=[nir,npz]")
    return formats


def check_exportable(cfg) -> list[str]:
    """Refuse, before any test pass, what no export format can express: BatchNorm (no NIR node,
    no integer form) and the sigma-delta neuron (no NIR neuron node, no beta/threshold)."""
    formats = check_formats(cfg.export)
    model = cfg.get("model") or {}
    if model.get("neuron", "leaky") != "leaky":
        raise ConfigError(f"export={','.join(formats)} is not available for model.neuron={model.neuron}: "
                          f"only leaky (LIF) networks can be exported; train with model.neuron=leaky to export")
    if model.get("batchnorm"):
        raise ConfigError(f"export={','.join(formats)} is not available for model.batchnorm=true: NIR and the "
                          f"integer format have no BatchNorm; train with model.batchnorm=false to export")
    return formats


def export(net, formats: str | Sequence[str], out_dir: Path, input_shape: Sequence[int]) -> list[Path]:
    """Write ``model.nir`` and/or ``model_int.npz`` in ``out_dir``; returns the paths."""
    formats = check_formats(formats)
    if any(not isinstance(st.lif, Leaky) for st in net.stages):
        raise ConfigError("export: only networks of leaky (LIF) neurons can be exported (model.neuron=leaky)")
    net = net.cpu().eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    if "nir" in formats:
        nir.write(out_dir / "model.nir", to_nir(net, input_shape))
        paths.append(out_dir / "model.nir")
    if "npz" in formats:
        np.savez(out_dir / "model_int.npz", **integer_weights(net))
        paths.append(out_dir / "model_int.npz")
    return paths


def _node_fn(node):
    t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
    ints = lambda a: tuple(int(v) for v in np.atleast_1d(a))  # noqa: E731  (nir.read gives arrays)
    if isinstance(node, nir.Affine):
        return lambda x: F.linear(x, t(node.weight), t(node.bias))
    if isinstance(node, nir.Linear):
        return lambda x: F.linear(x, t(node.weight))
    if isinstance(node, nir.Conv2d):
        return lambda x: F.conv2d(x, t(node.weight), t(node.bias), ints(node.stride), ints(node.padding),
                                  ints(node.dilation), int(node.groups))
    if isinstance(node, nir.AvgPool2d):
        return lambda x: F.avg_pool2d(x, ints(node.kernel_size), ints(node.stride))
    if isinstance(node, nir.Flatten):  # NIR dims exclude the batch
        start, end = int(node.start_dim), int(node.end_dim)
        return lambda x: x.flatten(start + 1, end if end < 0 else end + 1)
    raise ValueError(f"simulate: unsupported node {type(node).__name__}")


def _order(graph: nir.NIRGraph) -> list[str]:
    nxt = dict(graph.edges)
    name, order = "input", []
    while name in nxt:
        name = nxt[name]
        order.append(name)
    return order[:-1]  # without "output"


@torch.no_grad()
def simulate(graph: nir.NIRGraph, x: torch.Tensor) -> torch.Tensor:
    """Output spikes [T, B, ...] of a sequential NIR graph for input [T, B, ...]; LIF nodes follow
    snnTorch's discrete Leaky (beta, threshold, reset from metadata; else beta = 1 - dt/tau)."""
    mems: dict[str, torch.Tensor] = {}
    resets: dict[str, torch.Tensor] = {}
    out = []
    for x_t in x.unbind(0):
        h = x_t.float()
        for name in _order(graph):
            node = graph.nodes[name]
            if not isinstance(node, nir.LIF):
                h = _node_fn(node)(h)
                continue
            meta = node.metadata or {}
            beta = meta.get("beta", float(1 - DT / np.asarray(node.tau).flat[0]))
            thr = meta.get("threshold", float(np.asarray(node.v_threshold).flat[0]))
            mode = meta.get("reset_mechanism", "zero")
            mem, reset = mems.get(name, torch.zeros_like(h)), resets.get(name, torch.zeros_like(h))
            if mode == "subtract":
                mem = beta * mem + h - reset * thr
            elif mode == "zero":
                mem = beta * (1 - reset) * mem + h
            else:
                mem = beta * mem + h
            h = (mem - thr > 0).float()
            mems[name], resets[name] = mem, h
        out.append(h)
    return torch.stack(out)

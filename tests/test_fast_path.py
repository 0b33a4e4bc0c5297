"""The fast path (impl="fast") computes what the plain snnTorch loop (impl="snntorch") computes:
same outputs, same gradients, same BatchNorm statistics, for every option it supports.

Checked in float64 where a rounding difference cannot flip a spike. snnTorch's surrogates
return float32 spikes, so whole networks run in float64 through ``as_f64`` (the same
surrogate, its spikes cast back to the membrane's dtype); the neuron alone runs the raw
surrogates.
"""
from __future__ import annotations

import functools
from pathlib import Path

import pytest
import snntorch as snn
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from snntorch.functional.quant import state_quant

from qsnn.nn.models.csnn import ConvAvgPool2d, csnn
from qsnn.nn.models.fcsnn import fcsnn
from qsnn.nn.neurons import lif_fused, lif_multistep, make_leaky
from qsnn.nn.quant.apply import quantize_weights
from qsnn.nn.quant.uniform import UniformSTEQuantizer

CONF = Path(__file__).resolve().parents[1] / "conf" / "surrogate"
SNNTORCH_SURROGATES = sorted(p.stem for p in CONF.glob("*.yaml")
                             if str(OmegaConf.load(p).get("_target_", "")).startswith("snntorch."))


def surrogate(name: str):
    return instantiate(OmegaConf.load(CONF / f"{name}.yaml"))


def as_f64(sg):
    return lambda u: sg(u).to(u.dtype)


def snntorch_loop(cur, lif):
    """The reference: snn.Leaky called step by step."""
    mem, spk, mems = lif.init_leaky(), [], []
    for c in cur.unbind(0):
        s, mem = lif(c, mem)
        spk.append(s)
        mems.append(mem)
    return torch.stack(spk), torch.stack(mems)


def grads_of(fn, inputs, params, weight):
    spk, mem = fn()
    loss = (spk * weight).sum() + 0.1 * (mem * mem).sum()  # gradients through spikes and membrane
    return [spk, mem, *torch.autograd.grad(loss, [*inputs, *params])]


def assert_all_close(got, want, rtol=1e-9, atol=1e-9):
    for g, w in zip(got, want):
        g, w = g.detach().double(), w.detach().double()
        scale = w.abs().max().clamp_min(1.0)
        torch.testing.assert_close(g, w, rtol=rtol, atol=atol * scale)


@pytest.mark.parametrize("name", SNNTORCH_SURROGATES)
@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
def test_fused_lif_matches_snntorch_leaky(name, reset):
    lif = make_leaky(0.8, 0.5, surrogate(name), learn_beta=True, learn_threshold=True, reset=reset).double()
    cur = torch.randn(7, 3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    weight = torch.randn(7, 3, 5, generator=torch.Generator().manual_seed(1))
    params = [lif.beta, lif.threshold]
    want = grads_of(lambda: snntorch_loop(c0, lif), [c0 := cur.clone().requires_grad_()], params, weight)
    got = grads_of(lambda: lif_fused(c1, lif), [c1 := cur.clone().requires_grad_()], params, weight)
    # snnTorch's spikes are float32; the fused LIF gives float64 spikes in a float64 run (trainer.precision=64
    # would otherwise feed float32 spikes into float64 weights), the same 0/1 values
    assert got[0].dtype == torch.promote_types(want[0].dtype, cur.dtype)
    # snnTorch forms reset*threshold from float32 spikes, so its threshold gradient is summed in float32
    assert_all_close(got[:4], want[:4])
    assert_all_close(got[4:], want[4:], rtol=1e-6, atol=1e-6)


def test_fused_lif_generic_surrogate_and_fallback():
    """A surrogate qsnn does not know runs through its own autograd; state_quant falls back to the loop."""

    class Boxcar(torch.autograd.Function):
        @staticmethod
        def forward(ctx, u):
            ctx.save_for_backward(u)
            return (u > 0).to(u.dtype)

        @staticmethod
        def backward(ctx, g):
            (u,) = ctx.saved_tensors
            return g * (u.abs() < 0.5).to(g.dtype)

    cur = torch.randn(6, 4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    weight = torch.randn(6, 4, 3, dtype=torch.float64)
    for sq in (None, state_quant(num_bits=4, uniform=True, threshold=1.0)):
        lif = make_leaky(0.9, 1.0, Boxcar.apply, learn_beta=True, state_quant=sq).double()
        want = grads_of(lambda: snntorch_loop(c0, lif), [c0 := cur.clone().requires_grad_()], [lif.beta], weight)
        fast = lif_fused if sq is None else lif_multistep
        got = grads_of(lambda: fast(c1, lif), [c1 := cur.clone().requires_grad_()], [lif.beta], weight)
        assert_all_close(got, want)


def test_conv_avgpool_fused_equals_conv_then_pool():
    torch.manual_seed(0)
    op = quantize_weights(ConvAvgPool2d(3, 4, 5), lambda: UniformSTEQuantizer(4), bits=4).double()
    x = torch.rand(2, 3, 13, 12, dtype=torch.float64)
    w = op[0].parametrizations.weight.original
    y_ref = op(x)
    (g_ref,) = torch.autograd.grad((y_ref ** 2).sum(), w)
    y = op.fused_fn()(x)
    (g,) = torch.autograd.grad((y ** 2).sum(), w)
    assert y.shape == y_ref.shape
    assert_all_close([y, g], [y_ref, g_ref], rtol=1e-12, atol=1e-12)


def build(model, impl, bits, per_channel, state_bits, reset, surrogate_name, **kw):
    torch.manual_seed(0)
    q = state_quant(num_bits=state_bits, uniform=True, threshold=0.5) if state_bits else None
    sq = (lambda m: q(m).to(m.dtype)) if q else None  # snnTorch's state_quant returns float32
    kw = {"threshold": 0.5, **kw}
    net = model(spike_grad=as_f64(surrogate(surrogate_name)), impl=impl, reset=reset,
                learn_beta=True, learn_threshold=True, state_quant=sq, **kw)
    return quantize_weights(net, lambda: UniformSTEQuantizer(bits, per_channel), bits=bits).double()


CSNN = functools.partial(csnn, input_shape=(1, 16, 16), num_classes=5, channels=(4, 8))
FCSNN = functools.partial(fcsnn, input_shape=(1, 8, 8), num_classes=5, hidden=(16,))
CASES = [  # (model, bits, per_channel, state_bits, reset, surrogate, encoding, extra)
    ("csnn", 4, False, None, "subtract", "fast_sigmoid", "direct", {"batchnorm": True}),
    ("csnn", 4, True, None, "zero", "atan", "rate", {"batchnorm": True}),
    ("csnn", 1, False, None, "subtract", "straight_through", "direct", {"batchnorm": False, "threshold": 0.02}),
    ("csnn", 32, False, None, "none", "sigmoid", "rate", {"batchnorm": False, "threshold": 0.02}),
    ("csnn", 4, False, 4, "subtract", "triangular", "direct", {"batchnorm": True}),
    ("fcsnn", 4, False, None, "subtract", "fast_sigmoid", "direct", {}),
    ("fcsnn", 1, True, None, "zero", "triangular", "rate", {}),
    ("fcsnn", 32, False, 4, "subtract", "atan", "direct", {}),
    ("fcsnn", 4, False, None, "none", "sigmoid", "direct", {}),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c[:7])))
def test_net_fast_equals_snntorch_loop(case):
    model, bits, per_channel, state_bits, reset, sg, encoding, extra = case
    model = {"csnn": CSNN, "fcsnn": FCSNN}[model]
    ref = build(model, "snntorch", bits, per_channel, state_bits, reset, sg, **extra)
    fast = build(model, "fast", bits, per_channel, state_bits, reset, sg, **extra)
    fast.load_state_dict(ref.state_dict())
    shape = (6, 3, 1, 16, 16) if model is CSNN else (6, 3, 1, 8, 8)
    g = torch.Generator().manual_seed(3)
    img = torch.rand(shape[1:], dtype=torch.float64, generator=g)
    x = img.expand(shape) if encoding == "direct" else torch.bernoulli(img.expand(shape), generator=g)
    weight = torch.randn(6, 3, 5, dtype=torch.float64, generator=g)
    params = [p for p in ref.parameters()]
    want = grads_of(lambda: ref(x), [], params, weight)
    got = grads_of(lambda: fast(x), [], list(fast.parameters()), weight)
    assert all(r > 0 for r in ref.rates), ref.rates  # every layer spiked
    assert_all_close(got, want, rtol=1e-7, atol=1e-7)
    bn = [m for net in (fast, ref) for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for a, b in zip(bn[: len(bn) // 2], bn[len(bn) // 2:]):  # running statistics, updated T times per batch
        assert_all_close([a.running_mean, a.running_var], [b.running_mean, b.running_var], rtol=1e-7, atol=1e-7)
        assert a.num_batches_tracked == b.num_batches_tracked


def test_csnn_float32_default_surrogate_and_inference_mode():
    """The training dtype with snnTorch's raw surrogate, and evaluation under inference_mode."""
    torch.manual_seed(0)
    ref = quantize_weights(CSNN(spike_grad=snn.surrogate.fast_sigmoid(25), impl="snntorch"),
                           lambda: UniformSTEQuantizer(4), bits=4)
    fast = quantize_weights(CSNN(spike_grad=snn.surrogate.fast_sigmoid(25), impl="fast"),
                            lambda: UniformSTEQuantizer(4), bits=4)
    fast.load_state_dict(ref.state_dict())
    x = torch.rand(3, 1, 16, 16).expand(8, 3, 1, 16, 16)
    weight = torch.randn(8, 3, 5)
    want = grads_of(lambda: ref(x), [], list(ref.parameters()), weight)
    got = grads_of(lambda: fast(x), [], list(fast.parameters()), weight)
    assert_all_close(got, want, rtol=1e-4, atol=1e-4)
    ref.eval(), fast.eval()
    with torch.inference_mode():
        assert_all_close(fast(x), ref(x), rtol=1e-4, atol=1e-4)


def test_bench_prints_the_comparison(capsys):
    from qsnn.cost.bench import main

    threads = torch.get_num_threads()
    try:
        main(["--cases", "fcsnn", "--repeats", "1", "--threads", "1", "--no-memory", "--no-train-run", "--no-cost-pass"])
    finally:
        torch.set_num_threads(threads)  # the bench sets it process-wide
    out = capsys.readouterr().out
    assert "snntorch" in out and "fast" in out and "speed-up" in out and "output spikes differing: 0" in out

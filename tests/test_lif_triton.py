"""The Triton LIF kernels (qsnn.nn.lif_triton) compute what the fused torch recurrence
(``LIFSequence``, the CPU path and reference) computes: float32 spikes bit for bit, gradients of
input, beta and threshold to 1e-6, float64 too; every surrogate of conf/surrogate/, every reset mode,
scalar and per-neuron beta/threshold, odd neuron counts, T=1.

Here the kernels run in Triton's CPU interpreter: ``TRITON_INTERPRET=1`` is read when a kernel is
decorated, so it is set before ``qsnn.nn.lif_triton`` is first imported (only this module imports
it on a CPU machine). On a GPU machine ``python tests/test_lif_triton.py`` (and
``test_kernels_on_cuda``, in a subprocess without the interpreter) runs the same comparisons on CUDA.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

if __name__ not in ("__main__", "__mp_main__"):  # under pytest: the interpreter (not in the CUDA check)
    os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402
from hydra.utils import instantiate  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

pytest.importorskip("triton", reason="triton is not installed (pip install -e '.[dev]')")

from qsnn.nn import lif_gpu  # noqa: E402
from qsnn.nn.lif_gpu import LIFTriton, triton_path  # noqa: E402
from qsnn.nn.neurons import LIFSequence  # noqa: E402

# the interpreter runs the kernels in numpy, which warns where exp overflows to inf (on purpose: the
# sigmoid_derivative shape takes 1 / (1 + inf) = 0 in its tail)
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")

CONF = Path(__file__).resolve().parents[1] / "conf" / "surrogate"
SURROGATES = sorted(p.stem for p in CONF.glob("*.yaml"))
RESETS = ["subtract", "zero", "none"]
# (T, B, neurons): odd counts, one step, a layer wider than one program's block
SHAPES = [(7, 3, 5), (1, 2, 33), (4, 1, 301)]
PARAMS = [("scalar", "scalar"), ("neuron", "neuron"), ("neuron", "scalar")]  # (beta, threshold)


def surrogate(name: str):
    return instantiate(OmegaConf.load(CONF / f"{name}.yaml"))


def run(fn, cur, beta, thr, sg, reset, spikes=True, membrane=True):
    """Outputs and gradients (input, beta, threshold) of one LIF autograd Function."""
    c, b, t = (v.clone().requires_grad_() for v in (cur, beta, thr))
    spk, mem = fn.apply(c, b, t, sg, reset)
    w = torch.randn(spk.shape, generator=torch.Generator().manual_seed(1), dtype=spk.dtype).to(spk.device)
    loss = sum(term for term, on in (((spk * w).sum(), spikes), (0.1 * (mem * mem).sum(), membrane)) if on)
    return [spk, mem, *torch.autograd.grad(loss, [c, b, t])]


def inputs(shape, beta_kind, thr_kind, dtype, device, seed=0):
    g, n = torch.Generator().manual_seed(seed), shape[-1]
    cur = torch.randn(shape, generator=g, dtype=dtype) * 0.8 + 0.3
    per_neuron = torch.rand(2, n, generator=g, dtype=dtype)
    beta = per_neuron[0] * 0.5 + 0.45 if beta_kind == "neuron" else torch.tensor(0.8, dtype=dtype)
    thr = per_neuron[1] + 0.25 if thr_kind == "neuron" else torch.tensor(0.5, dtype=dtype)
    return cur.to(device), beta.to(device), thr.to(device)


def assert_same(got, want, tol=1e-6):
    """Spikes and membrane exactly (float32 too); gradients to ``tol`` of their largest value."""
    for i, (g, w) in enumerate(zip(got, want)):
        assert g.dtype == w.dtype and g.shape == w.shape, (i, g.dtype, w.dtype, g.shape, w.shape)
        if i < 2:
            assert torch.equal(g, w), f"output {i} differs: {(g != w).sum()} of {g.numel()}"
        else:
            scale = w.detach().abs().max().clamp_min(1.0).item()
            torch.testing.assert_close(g, w, rtol=tol, atol=tol * scale)


def compare(name, reset, dtype, device):
    sg = surrogate(name)
    for shape in SHAPES:
        for beta_kind, thr_kind in PARAMS:
            args = (*inputs(shape, beta_kind, thr_kind, dtype, device), sg, reset)
            assert_same(run(LIFTriton, *args), run(LIFSequence, *args))


@pytest.fixture
def forced(monkeypatch):
    monkeypatch.setattr(lif_gpu, "USE_TRITON", True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("name", SURROGATES)
def test_kernel_equals_lif_sequence(name, reset, dtype, forced):
    assert triton_path(torch.zeros(1, dtype=dtype), torch.zeros(1, dtype=dtype), surrogate(name))[0]
    compare(name, reset, dtype, "cpu")


@pytest.mark.parametrize("spikes,membrane", [(True, False), (False, True)])
def test_gradient_through_spikes_or_membrane_only(spikes, membrane):
    args = (*inputs((5, 2, 9), "neuron", "neuron", torch.float32, "cpu"), surrogate("sg_gaussian"), "zero")
    assert_same(run(LIFTriton, *args, spikes=spikes, membrane=membrane),
                run(LIFSequence, *args, spikes=spikes, membrane=membrane))


def test_repeated_input_and_channel_broadcast_parameters():
    """Direct encoding hands the LIF an expanded view (time stride 0); a stacked conv stage hands it
    per-channel beta/threshold of shape [C, 1, 1] over [T, B, C, H, W]."""
    g = torch.Generator().manual_seed(4)
    cur = torch.randn(2, 4, 3, 3, generator=g).unsqueeze(0).expand(6, 2, 4, 3, 3)
    beta, thr = torch.rand(4, 1, 1, generator=g), torch.rand(4, 1, 1, generator=g) + 0.2
    assert cur.stride(0) == 0
    args = (cur, beta, thr, surrogate("atan"), "subtract")
    assert_same(run(LIFTriton, *args), run(LIFSequence, *args))


def test_what_the_kernel_does_not_cover_stays_on_torch(forced, monkeypatch):
    boxcar = lambda u: (u > 0).to(u.dtype)  # noqa: E731  a surrogate with no closed form in the kernel
    x = torch.zeros(2, 3)
    use, path = triton_path(x, x, boxcar)
    assert not use and "no closed form" in path
    use, path = triton_path(x.bfloat16(), x.bfloat16(), surrogate("atan"))
    assert not use and "bfloat16" in path
    monkeypatch.setattr(lif_gpu, "USE_TRITON", None)
    assert triton_path(x, x, surrogate("atan")) == (False, "fused torch (cpu)")


def test_stacked_net_goes_through_the_dispatcher(forced, monkeypatch):
    """StackedLeaky.multistep runs the same kernels (the seed dimension is just more neurons)."""
    from qsnn.nn.models.fcsnn import fcsnn
    from qsnn.stacked.net import StackedNet

    calls, forward = [], LIFTriton.forward

    def counted(ctx, *args):
        calls.append(args[0].shape)
        return forward(ctx, *args)

    nets = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        nets.append(fcsnn(input_shape=(1, 4, 4), num_classes=3, hidden=(7,), spike_grad=surrogate("sg_triangular"),
                          learn_beta=True, learn_threshold=True, threshold=0.3))
    stacked = StackedNet(nets)
    x = torch.rand(5, 2, 1, 4, 4, generator=torch.Generator().manual_seed(2))
    xs = stacked.fold_input([x, x])
    monkeypatch.setattr(lif_gpu, "USE_TRITON", None)
    want = stacked(xs)[0]
    want_g = torch.autograd.grad(want.sum(), [stacked.stages[0].lif.beta, stacked.stages[0].lif.threshold])
    monkeypatch.setattr(lif_gpu, "USE_TRITON", True)
    monkeypatch.setattr(LIFTriton, "forward", staticmethod(counted))
    got = stacked(xs)[0]
    got_g = torch.autograd.grad(got.sum(), [stacked.stages[0].lif.beta, stacked.stages[0].lif.threshold])
    assert [s[2:] for s in calls] == [(2, 7), (2, 3)]  # [T, B, seeds, features] per stage
    assert torch.equal(got, want)
    for g, w in zip(got_g, want_g):
        torch.testing.assert_close(g, w, rtol=1e-6, atol=1e-6)


def test_one_log_line_says_which_path(monkeypatch, caplog):
    from qsnn.nn.models.fcsnn import fcsnn

    monkeypatch.setattr(lif_gpu, "_logged", set())
    net = fcsnn(input_shape=(4,), num_classes=2, hidden=(3,), spike_grad=surrogate("atan"))
    with caplog.at_level("INFO", logger="qsnn"):
        net(torch.rand(3, 2, 4))
        net(torch.rand(3, 2, 4))
    assert [r.getMessage() for r in caplog.records] == ["LIF recurrence: fused torch (cpu)"]


def test_fused_adam_only_when_every_parameter_is_on_cuda():
    """CPU runs build the optimizer exactly as the config says (bit-identical); CUDA ones add fused=True."""
    from functools import partial
    from types import SimpleNamespace

    from qsnn.nn.speed import fused_on_cuda

    class Opt:
        def __init__(self, params, lr, fused=None):
            self.params, self.lr, self.fused = list(params), lr, fused

    cpu, gpu = torch.zeros(1), SimpleNamespace(is_cuda=True)
    assert fused_on_cuda(partial(Opt, lr=0.1))(params=[cpu]).fused is None
    assert fused_on_cuda(partial(Opt, lr=0.1))(params=[{"params": [gpu]}]).fused is True
    assert fused_on_cuda(partial(Opt, lr=0.1, fused=False))(params=[gpu]).fused is False  # the config decides
    adam = fused_on_cuda(partial(torch.optim.Adam, lr=0.1))(params=[torch.nn.Parameter(cpu)])
    assert adam.defaults["fused"] is None and type(adam) is torch.optim.Adam


def test_compile_switch():
    from qsnn.errors import ConfigError
    from qsnn.nn.speed import compile_net

    net = torch.nn.Linear(2, 2)
    assert compile_net(net, False) is net and net._compiled_call_impl is None
    with pytest.raises(ConfigError, match="compile='fast'"):
        compile_net(net, "fast")
    compile_net(net, "reduce-overhead")  # compiled lazily, at the first call
    assert net._compiled_call_impl is not None


def test_gpu_bench_runs_its_rows(capsys, monkeypatch):
    """The GPU bench's flow on the CPU (the CUDA-graph row says why it cannot run here)."""
    from types import SimpleNamespace

    from qsnn.cost import bench_gpu, bench_on

    bench_gpu.main(SimpleNamespace(device="cpu", compile=False, repeats=1, cases=["fcsnn"], gpu_batches=[4],
                                   no_train_run=True))
    out = capsys.readouterr().out
    assert all(row in out for row in ("snntorch", "fused torch", "triton ")) and "not run: RuntimeError" in out
    monkeypatch.setattr(bench_on, "T", 20)
    bench_on.run([8], torch.device("cpu"), 1)
    out = capsys.readouterr().out
    assert "n=    8 qsnn" in out and "n=    8 snntorch" in out and "spikingjelly" in out


def _without_interpreter(*args: str) -> subprocess.CompletedProcess:
    """This file run as a script in a fresh process where the kernels are compiled, not interpreted."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    return subprocess.run([sys.executable, __file__, *args], env=env, capture_output=True, text=True)


def test_kernels_compile_for_hopper_without_fused_multiply_add():
    """Triton's own compiler (no GPU needed) builds every kernel variant for sm_90 (H100/H200), and
    the forward's PTX has no fma: enable_fp_fusion=False keeps m * beta + I two roundings, as in PyTorch."""
    r = _without_interpreter("hopper")
    if r.returncode == 3:
        pytest.skip(r.stdout.strip())
    assert r.returncode == 0, r.stdout + r.stderr
    assert "compiled" in r.stdout


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_kernels_on_cuda():
    r = _without_interpreter()
    assert r.returncode == 0, r.stdout + r.stderr
    print(r.stdout)


def hopper_compile_check() -> None:
    import re

    from qsnn.nn import lif_triton as k

    try:
        from triton import compile as triton_compile
        from triton.backends.compiler import GPUTarget
        from triton.compiler import ASTSource
    except ImportError as e:
        print(f"this triton has no ahead-of-time compile API: {e}")
        sys.exit(3)
    constexprs = {"RESET", "SURR", "HAS_GSPK", "HAS_GMEM", "BLOCK"}

    def compile_ptx(fn, dtype: str, **const) -> str:
        sig = {a: "constexpr" if a in constexprs else f"*{dtype}" if a.endswith("_ptr") else "i32"
               for a in fn.arg_names}
        src = ASTSource(fn=fn, signature=sig, constexprs={"BLOCK": 128, **const})
        return triton_compile(src, target=GPUTarget("cuda", 90, 32),
                              options={"num_warps": 4, "enable_fp_fusion": False}).asm["ptx"]

    codes = sorted({code for code, _ in [*lif_gpu.SNNTORCH.values(), *lif_gpu.FAMILY.values()]})
    n = 0
    for dtype in ("fp32", "fp64"):
        for reset in lif_gpu.RESETS.values():
            ptx = compile_ptx(k._lif_forward, dtype, RESET=reset)
            assert not re.search(r"\bfma\.", ptx), f"forward {dtype} reset {reset}: fused multiply-add in the PTX"
            n += 1
        for surr in codes:
            compile_ptx(k._lif_backward, dtype, RESET=0, SURR=surr, HAS_GSPK=True, HAS_GMEM=dtype == "fp64")
            n += 1
    print(f"compiled {n} kernel variants for sm_90")


def cuda_check(name: str) -> str:
    for dtype in (torch.float32, torch.float64):
        for reset in RESETS:
            compare(name, reset, dtype, "cuda")
    return name


if __name__ == "__main__" and sys.argv[1:] == ["hopper"]:
    hopper_compile_check()
elif __name__ == "__main__":  # the same comparisons with the compiled kernels on the GPU
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    # one process per surrogate: each compiles its kernel variants (reset x dtype), all in parallel
    with ProcessPoolExecutor(min(len(SURROGATES), os.cpu_count() or 1), mp_context=mp.get_context("spawn")) as ex:
        for name in ex.map(cuda_check, SURROGATES):
            print(f"LIF kernels on CUDA equal LIFSequence on CUDA: {name}, {len(RESETS)} resets x float32/float64 "
                  f"x {len(SHAPES)} shapes x {len(PARAMS)} kinds of beta/threshold", flush=True)

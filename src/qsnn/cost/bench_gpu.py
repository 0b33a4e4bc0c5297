"""The training-step benchmark on a GPU (``python -m qsnn.bench --device cuda``).

csnn and fcsnn (``qsnn.cost.bench_cases.CASES``) at each batch size of ``--gpu-batches``, one training step
(zero_grad, forward, loss, backward, Adam; fused Adam on CUDA, as ``qsnn.nn.speed.fused_on_cuda``
builds it for runs) per implementation:
- ``snntorch``: the snnTorch loop (impl="snntorch");
- ``fused torch``: the fast path with the CPU's fused LIF recurrence (``LIFSequence``) on CUDA;
- ``triton``: the fast path with the Triton LIF kernels (what a CUDA run uses);
- ``triton+graph``: the same step captured once as a CUDA graph and replayed (``torch.cuda.graph``;
  Adam with ``capturable=True``): what launch overhead costs is the gap to ``triton``;
- ``triton+compile`` (``--compile`` only: compiling takes minutes): ``net.compile(mode="reduce-overhead")``,
  what ``compile=reduce-overhead`` runs.
Each row: median ms per step over ``--repeats`` interleaved steps (each synchronised, after three
warm-ups), the peak of allocated GPU memory over one step, and the share of the step's floor
(``qsnn.cost.bench_floor``: FLOPs and unavoidable bytes against the peak rates it prints).
Last (skipped by ``--no-train-run``), whole ``src/train.py`` runs on the GPU: ``experiment=qsnn_mnist`` at
T=25 on synthetic MNIST-sized IDX files, and a randman job of 15 epochs; their fit time per step,
minus the bare step above, is what Lightning and the data loop cost per step.
"""
from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from qsnn.cost.bench_cases import CASES, ROOT, build
from qsnn.cost.bench_floor import describe, floor_s, peaks, step_work
from qsnn.nn import lif_gpu

IMPLS = {  # row: (model impl, lif_gpu.USE_TRITON, how the step runs)
    "snntorch": ("snntorch", False, "eager"),
    "fused torch": ("fast", False, "eager"),
    "triton": ("fast", None, "eager"),
    "triton+graph": ("fast", None, "graph"),
    "triton+compile": ("fast", None, "compile"),
}


def _step(net, opt, loss_fn, x, y) -> None:
    opt.zero_grad(set_to_none=True)
    loss_fn(net(x)[0], y).backward()
    opt.step()


def graphed(net, opt, loss_fn, x, y):
    """The whole step captured as one CUDA graph (static input, grads in the graph's pool); returns replay."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-ups on a side stream, as capture requires
        for _ in range(3):
            _step(net, opt, loss_fn, x, y)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    opt.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        loss_fn(net(x)[0], y).backward()
        opt.step()
    return graph.replay


def make_runner(case: str, batch: int, row: str, device: torch.device):
    """A no-argument function running one training step of ``row``'s implementation."""
    impl, use_triton, how = IMPLS[row]
    net, opt, loss_fn, x, y = build(case, impl, batch=batch, device=device, capturable=how == "graph")
    if how == "compile":
        net.compile(mode="reduce-overhead")
    lif_gpu.USE_TRITON = use_triton
    if how == "graph":
        return graphed(net, opt, loss_fn, x, y)

    def run():
        lif_gpu.USE_TRITON = use_triton  # the rows run interleaved: each sets its LIF path
        _step(net, opt, loss_fn, x, y)

    return run


def time_case(case: str, batch: int, rows: list[str], repeats: int, device: torch.device) -> dict[str, dict]:
    runners, out = {}, {}
    for row in rows:
        try:
            runners[row] = make_runner(case, batch, row, device)
            for _ in range(3):
                runners[row]()
        except Exception as e:  # e.g. a capture that fails: the row says why, the others run
            out[row] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
            runners.pop(row, None)
    times = {row: [] for row in runners}
    for _ in range(repeats):  # interleaved, so clock or load changes hit every row alike
        for row, run in runners.items():
            sync(device)
            t = time.perf_counter()
            run()
            sync(device)
            times[row].append(time.perf_counter() - t)
    for row, run in runners.items():
        out[row] = {"s": statistics.median(times[row]), "peak": peak_memory(run, device)}
    lif_gpu.USE_TRITON = None
    return {row: out[row] for row in rows}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory(run, device: torch.device) -> int | None:
    """Peak allocated GPU memory while ``run()`` runs (None on a CPU)."""
    if device.type != "cuda":
        run()
        return None
    torch.cuda.reset_peak_memory_stats(device)
    run()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device)


def report_case(case: str, batch: int, res: dict[str, dict], device: torch.device) -> None:
    _, _, steps, shape = CASES[case]
    net, _, loss_fn, x, y = build(case, "fast", batch=batch, device=device)
    work = step_work(net, loss_fn, x, y)
    floor = floor_s(work, device)
    print(f"\n{case}: B={batch}, T={steps}, input {'x'.join(map(str, shape))}, 4-bit weights; "
          f"{describe(work)}" + (f", floor {floor * 1e3:.3f} ms" if floor else ""), flush=True)
    base = res.get("snntorch", {}).get("s")
    for row, r in res.items():
        if "error" in r:
            print(f"  {row:14s} not run: {r['error']}")
            continue
        mem = f"  peak {r['peak'] / 2**20:7.0f} MiB" if r["peak"] is not None else ""
        share = f"  {100 * floor / r['s']:5.1f}% of the floor" if floor else ""
        vs = f"  {base / r['s']:5.1f}x vs snntorch loop" if base else ""
        print(f"  {row:14s} {r['s'] * 1e3:8.2f} ms/step{mem}{share}{vs}", flush=True)


def _train(args: list[str]) -> dict:
    """summary.json of one ``src/train.py`` run on the GPU (CSV logger, no W&B)."""
    with tempfile.TemporaryDirectory() as d:
        env = {**os.environ, "WANDB_MODE": "disabled"}
        subprocess.run([sys.executable, str(ROOT / "src" / "train.py"), "trainer=gpu", "logger=csv",
                        "print_config=false", "callbacks.progress_bar=null", f"hydra.run.dir={d}/run", *args],
                       cwd=ROOT, env=env, check=True, capture_output=True)
        return json.loads((Path(d) / "run" / "summary.json").read_text())


def train_runs(bare_step_s: float | None) -> None:
    from qsnn.data.synthetic_idx import write_mnist_like

    with tempfile.TemporaryDirectory() as d:
        root = write_mnist_like(Path(d) / "mnist", 60000, 10000)
        s = _train(["experiment=qsnn_mnist", f"data.root={root}", "data.num_steps=25", "trainer.max_epochs=1"])
    steps = math.ceil(60000 / 128)
    per = s["fit_s"] / steps
    extra = f"; minus the bare step ({bare_step_s * 1e3:.2f} ms): {(per - bare_step_s) * 1e3:.2f} ms of Lightning " \
            "and data per step" if bare_step_s else ""
    print(f"\npython src/train.py experiment=qsnn_mnist trainer=gpu (synthetic 60,000/10,000 IDX, T=25, 1 epoch): "
          f"fit {s['fit_s']:.1f} s, wall {s['wall_s']:.1f} s; {per * 1e3:.2f} ms per step ({steps} steps){extra}")
    r = _train(["data=randman", "trainer.max_epochs=15"])
    print(f"python src/train.py data=randman trainer.max_epochs=15 trainer=gpu: fit {r['fit_s']:.1f} s, "
          f"wall {r['wall_s']:.1f} s", flush=True)


def main(args) -> None:
    device = torch.device(args.device)
    rows = [r for r in IMPLS if r != "triton+compile" or args.compile]
    print(f"torch {torch.__version__}, {peaks(device)[3]}; median of {args.repeats} interleaved steps", flush=True)
    bare = None
    for case in args.cases:
        for batch in args.gpu_batches:
            res = time_case(case, batch, rows, args.repeats, device)
            report_case(case, batch, res, device)
            if case == "csnn" and batch == 128:
                bare = res.get("triton", {}).get("s")
    if not args.no_train_run:
        train_runs(bare)

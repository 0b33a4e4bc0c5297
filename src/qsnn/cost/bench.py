"""Training-step benchmark: the plain snnTorch loop (impl="snntorch") vs the fast path (impl="fast").

    python -m qsnn.bench                 # or: make bench
    python -m qsnn.bench --threads 1     # on a loaded machine: 2 OpenMP threads sharing 2 busy
                                         # cores spin and wait; 1 thread is steadier

For csnn (B=128, T=25, random 1x28x28 in [0, 1], channels 16-64, BatchNorm) and fcsnn
(digits-shaped: B=64, T=10, 64-128-10), both 4-bit weights, fast_sigmoid(25), direct encoding,
mse_count loss, Adam. A training step is zero_grad + forward + loss + backward + optimizer step.
The two implementations share weights and are timed interleaved in one process (median of
``--repeats``). Peak memory: the rise of peak RSS (VmHWM, reset just before) over the first
step, each implementation in its own fresh process (a clean heap). The max abs differences are float32, one step,
same weights (the float64 equivalence is in tests/test_fast_path.py). Last, the wall time of
``python src/train.py trainer.max_epochs=1``, split with the ``startup_s``/``fit_s`` the runner
writes to summary.json; then N seeds stacked in one process (``launcher=stacked``) vs one seed
alone, at the study budgets (``qsnn.cost.bench_stacked``; ``--stacked-seeds ''`` skips it). Then
(``--no-cost-pass`` skips it) the cost-metric pass on the MNIST-shaped
recipe: ``experiment=qsnn_mnist`` (T=10, one epoch) on synthetic IDX files (qsnn.data.synthetic_idx,
1,920 training and 640 test images, eval batch 64 so the test has 10 batches), run twice through
``src/train.py``: before (``cost.max_batches=null``: every test batch, as the pass used to) and
after (the default ``cost.max_batches``); the pass's wall time (``cost_s``) as a share of the run's,
and that share projected to real MNIST (60,000 training / 10,000 test images, eval batch 256)
from the measured seconds per training and per counted image. Last, the Open Neuromorphic SNN library
benchmark (``qsnn.cost.bench_on``; ``--on-sizes ''`` skips it). With ``--device cuda`` the bench runs its
GPU sections instead (``qsnn.cost.bench_gpu``), then the Open Neuromorphic benchmark on the GPU.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from qsnn.cost.bench_cases import CASES, ROOT, build
from qsnn.nn.cpu import retain_freed_memory

IMPLS = ("snntorch", "fast")


def train_step(net, opt, loss_fn, x, y) -> tuple[float, float]:
    """(wall, CPU) seconds of one step. CPU time (all threads of this process) is steadier than
    wall time on a shared machine: waiting for a core does not count."""
    t, c = time.perf_counter(), time.process_time()
    opt.zero_grad(set_to_none=True)
    spk, _ = net(x)
    loss_fn(spk, y).backward()
    opt.step()
    return time.perf_counter() - t, time.process_time() - c


def max_diffs(case: str) -> tuple[float, float, float, int, int]:
    """Max abs difference of outputs and of gradients (also relative to the largest gradient) after one
    forward/backward, and how many output spikes differ (float32 rounding can flip one near threshold)."""
    outs = []
    for impl in IMPLS:
        net, _, loss_fn, x, y = build(case, impl)
        spk, mem = net(x)
        loss_fn(spk, y).backward()
        outs.append((spk.detach(), mem.detach(), [p.grad for p in net.parameters()]))
    (s0, m0, g0), (s1, m1, g1) = outs
    d_out = max((s0 - s1).abs().max().item(), (m0 - m1).abs().max().item())
    d_grad = max((a - b).abs().max().item() for a, b in zip(g0, g1))
    scale = max(a.abs().max().item() for a in g0)
    return d_out, d_grad, d_grad / scale, int((s0 != s1).sum()), s0.numel()


def _rss_kib() -> tuple[int, int]:
    """(peak, current) resident set size of this process, KiB (Linux /proc)."""
    d = dict(line.split(":", 1) for line in open("/proc/self/status"))
    return int(d["VmHWM"].split()[0]), int(d["VmRSS"].split()[0])


def _peak_rss_child(case: str, impl: str, threads: int, q) -> None:
    torch.set_num_threads(threads)
    net, opt, loss_fn, x, y = build(case, impl)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak to the current RSS: imports and building do not count
    before = _rss_kib()[1]
    train_step(net, opt, loss_fn, x, y)
    q.put((_rss_kib()[0] - before) * 1024)


def peak_step_memory(case: str, impl: str, threads: int) -> int:
    ctx = mp.get_context("spawn")  # a fresh process: its peak RSS is this step's, nothing earlier
    q = ctx.Queue()
    p = ctx.Process(target=_peak_rss_child, args=(case, impl, threads, q))
    p.start()
    out = q.get()
    p.join()
    return out


def time_steps(case: str, repeats: int) -> dict[str, list[tuple[float, float]]]:
    runs = {impl: build(case, impl) for impl in IMPLS}
    for r in runs.values():  # warm-up: allocator, oneDNN kernels, Adam state
        train_step(*r)
    times = {impl: [] for impl in IMPLS}
    for _ in range(repeats):  # interleaved, so load changes hit both alike
        for impl, r in runs.items():
            times[impl].append(train_step(*r))
    return times


def train_run_times() -> dict[str, float]:
    """Wall time of the real entry point, split by the runner's summary.json."""
    with tempfile.TemporaryDirectory() as d:
        env = {**os.environ, "WANDB_MODE": os.environ.get("WANDB_MODE", "offline"), "WANDB_SILENT": "true"}
        t, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([sys.executable, str(ROOT / "src" / "train.py"), "trainer.max_epochs=1", f"paths.log_dir={d}",
                        "print_config=false", "hydra.job.chdir=false"], cwd=ROOT, env=env, check=True,
                       capture_output=True)
        wall = time.perf_counter() - t
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = ru.ru_utime + ru.ru_stime - cpu.ru_utime - cpu.ru_stime  # load-independent, unlike wall
        s = json.loads(next(Path(d).rglob("summary.json")).read_text())
    return {"process_wall_s": wall, "process_cpu_s": cpu, "imports_and_compose_s": wall - s["wall_s"], "startup_s": s["startup_s"],
            "fit_s": s["fit_s"], "test_and_close_s": s["wall_s"] - s["startup_s"] - s["fit_s"]}


def cost_pass_times(n_train: int = 1920, n_test: int = 640, steps: int = 10) -> dict[str, dict]:
    """The cost pass counting every test batch (before) and ``cost.max_batches`` of them (after)."""
    from qsnn.data.synthetic_idx import write_mnist_like

    out = {}
    with tempfile.TemporaryDirectory() as d:
        root = write_mnist_like(Path(d) / "mnist", n_train, n_test)
        env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
        for label, extra in (("before", ["cost.max_batches=null"]), ("after", [])):
            run_dir = Path(d) / label
            subprocess.run([sys.executable, str(ROOT / "src" / "train.py"), "experiment=qsnn_mnist", f"data.root={root}",
                            f"data.num_steps={steps}", "trainer.max_epochs=1", "+data.eval_batch_size=64",
                            "logger=csv", "print_config=false", f"hydra.run.dir={run_dir}", *extra],
                           cwd=ROOT, env=env, check=True, capture_output=True)
            s = json.loads((run_dir / "summary.json").read_text())
            out[label] = {"wall_s": s["wall_s"], "fit_s": s["fit_s"], "cost_s": s["cost_s"],
                          "samples": s["metrics"]["cost/samples"], "rate_mean": s["metrics"]["cost/rate_mean"]}
    return out


def print_cost_pass(r: dict, n_train: int = 1920, mnist_train: int = 60000, mnist_test: int = 10000) -> None:
    from qsnn.cost.metrics import cost_batches

    print("\ncost-metric pass, experiment=qsnn_mnist on synthetic MNIST-shaped IDX files (T=10, 1 epoch):")
    for label in ("before", "after"):
        v = r[label]
        print(f"  {label:6s} {v['cost_s']:6.1f} s of {v['wall_s']:6.1f} s wall ({100 * v['cost_s'] / v['wall_s']:4.1f}%),"
              f" {v['samples']:.0f} test images counted, rate_mean {v['rate_mean']:.4f}")
    per_img = r["before"]["cost_s"] / r["before"]["samples"]
    per_train = r["before"]["fit_s"] / n_train
    fit = mnist_train * per_train
    import yaml

    default = yaml.safe_load((ROOT / "conf" / "train.yaml").read_text())["cost"]["max_batches"]
    after_imgs = min(mnist_test, cost_batches(None, default) * 256) if default else mnist_test
    for label, imgs in (("before", mnist_test), ("after", after_imgs)):
        c = imgs * per_img
        print(f"  projected to MNIST ({mnist_train} train, {mnist_test} test images, eval batch 256), {label}: "
              f"cost pass {c:.0f} s = {100 * c / (fit + c):.1f}% of fit + cost pass (fit {fit:.0f} s, one epoch)")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--no-train-run", action="store_true")
    ap.add_argument("--stacked-seeds", default="10,20",
                    help="launcher=stacked: N seeds in one process vs one seed alone (comma-separated Ns; '' skips)")
    ap.add_argument("--stacked-data", default="randman,digits")
    ap.add_argument("--stacked-separate", action="store_true",
                    help="also run the N seeds as N separate jobs (launcher=joblib) instead of N x one seed")
    ap.add_argument("--no-cost-pass", action="store_true", help="skip the cost-metric pass comparison")
    ap.add_argument("--device", default="cpu", help="cuda: the GPU sections (qsnn.cost.bench_gpu), not the CPU ones")
    ap.add_argument("--gpu-batches", default="128,1024", type=lambda v: [int(b) for b in v.split(",")],
                    help="GPU: the batch sizes of csnn and fcsnn")
    ap.add_argument("--compile", action="store_true", help="GPU: also time net.compile(mode='reduce-overhead')")
    ap.add_argument("--tf32", action="store_true", help="GPU: float32 matmuls in TF32 too (convs are by default)")
    ap.add_argument("--on-sizes", default=None, type=lambda v: [int(n) for n in v.split(",") if n],
                    help="Open Neuromorphic benchmark sizes n ('' skips; default 512 on CPU, 512,4096,16384 on GPU)")
    ap.add_argument("--on-repeats", type=int, default=None, help="default: --repeats")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.on_repeats = args.on_repeats or args.repeats
    on_sizes = args.on_sizes if args.on_sizes is not None else ([512] if args.device == "cpu" else [512, 4096, 16384])
    if args.device != "cpu":
        from qsnn.cost import bench_gpu, bench_on

        torch.backends.cuda.matmul.allow_tf32 = args.tf32
        bench_gpu.main(args)
        bench_on.run(on_sizes, torch.device(args.device), args.on_repeats)
        return
    retain_freed_memory()  # as src/train.py does, for both implementations
    print(f"torch {torch.__version__}, {args.threads} thread(s), {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}; median of {args.repeats} interleaved steps", flush=True)
    for case in args.cases:
        _, batch, steps, shape = CASES[case]
        times = time_steps(case, args.repeats)
        wall = {impl: [w for w, _ in v] for impl, v in times.items()}
        cpu = {impl: statistics.median(c for _, c in v) for impl, v in times.items()}
        med = {impl: statistics.median(v) for impl, v in wall.items()}
        print(f"\n{case}: B={batch}, T={steps}, input {'x'.join(map(str, shape))}, 4-bit weights")
        for impl in IMPLS:
            v = wall[impl]
            mem = "" if args.no_memory else f"  peak +{peak_step_memory(case, impl, args.threads) / 2**20:6.1f} MiB"
            print(f"  {impl:9s} {med[impl]:7.3f} s/step (min {min(v):.3f}, max {max(v):.3f}; CPU {cpu[impl]:.3f} s)"
                  f"  {batch / med[impl]:7.1f} samples/s{mem}", flush=True)
        print(f"  speed-up  {med['snntorch'] / med['fast']:.2f}x wall, {cpu['snntorch'] / cpu['fast']:.2f}x CPU time"
              f" (fast vs snnTorch loop)")
        d_out, d_grad, d_rel, flips, n = max_diffs(case)
        print(f"  float32 max |diff|: outputs {d_out:.2e}, gradients {d_grad:.2e} ({d_rel:.1e} of the largest"
              f" gradient); output spikes differing: {flips} of {n}")
    if not args.no_train_run:
        r = train_run_times()
        print(f"\npython src/train.py trainer.max_epochs=1: {r['process_wall_s']:.1f} s wall = "
              f"imports+compose {r['imports_and_compose_s']:.1f} s + start-up (data, model, loggers) "
              f"{r['startup_s']:.1f} s + fit {r['fit_s']:.1f} s + test/close {r['test_and_close_s']:.1f} s"
              f" ({r['process_cpu_s']:.1f} s CPU time)")
    if not args.no_train_run and args.stacked_seeds:
        from qsnn.cost.bench_stacked import compare, report

        print(f"\nlauncher=stacked, {args.threads} torch thread(s), load average {os.getloadavg()[0]:.1f} "
              f"(whole train.py processes, study budgets):", flush=True)
        for data in args.stacked_data.split(","):
            report(compare(data, [int(n) for n in args.stacked_seeds.split(",")], args.threads,
                           args.stacked_separate))
    if not args.no_cost_pass:
        print_cost_pass(cost_pass_times())
    if on_sizes:
        from qsnn.cost import bench_on

        bench_on.run(on_sizes, torch.device("cpu"), args.on_repeats)


if __name__ == "__main__":
    main()

"""N seeds stacked in one process (``launcher=stacked``) vs one seed alone and N separate jobs.

Each measurement is a whole ``python src/train.py`` process with the study's settings (W&B offline
+ CSV loggers as in a real sweep, ``torch_threads`` as given): one seed alone; N seeds as one
stacked model (``-m launcher=stacked hydra.launcher.n_jobs=1``); and, with ``separate=True``, the
same N seeds as N separate jobs (``launcher=joblib``, its default 2 workers), else N times the
one-seed wall time (N jobs one after another). Peak memory: the largest resident set of the
process (``ru_maxrss`` of the child, from ``os.wait4``).
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

from qsnn.cost.bench_cases import ROOT

# the study budgets: sweeps/standard.yaml trains randman 15 epochs; digits runs conf/'s defaults
DATA = {"randman": ["data=randman", "trainer.max_epochs=15"], "digits": ["data=digits"]}
COMMON = ["print_config=false", "callbacks.progress_bar=null", "+callbacks.epoch_timer.verbose=false"]


def run_process(args: list[str], threads: int) -> tuple[float, float, float]:
    """(wall s, CPU s, peak RSS bytes) of ``python src/train.py *args``."""
    env = {**os.environ, "WANDB_MODE": os.environ.get("WANDB_MODE", "offline"), "WANDB_SILENT": "true"}
    with tempfile.TemporaryFile() as err:
        t = time.perf_counter()
        p = subprocess.Popen([sys.executable, str(ROOT / "src" / "train.py"), *args, *COMMON,
                              f"torch_threads={threads}"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t
        if status != 0:
            err.seek(0)
            raise RuntimeError(f"train.py {' '.join(args)} failed:\n{err.read().decode()[-2000:]}")
    return wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss * 1024


def compare(data: str, seeds: list[int], threads: int = 1, separate: bool = False) -> list[dict]:
    """One row per N in ``seeds``: stacked vs alone (and vs separate jobs)."""
    rows = []
    with tempfile.TemporaryDirectory() as d:
        alone = run_process([*DATA[data], "seed=1", f"hydra.run.dir={d}/alone"], threads)
        for n in seeds:
            grid = f"seed={','.join(str(s) for s in range(1, n + 1))}"
            stacked = run_process(["-m", "launcher=stacked", "hydra.launcher.n_jobs=1", *DATA[data], grid,
                                   f"hydra.sweep.dir={d}/stacked{n}"], threads)
            sep = run_process(["-m", "launcher=joblib", *DATA[data], grid, f"hydra.sweep.dir={d}/separate{n}"],
                              threads) if separate else None
            rows.append({"data": data, "seeds": n, "alone": alone, "stacked": stacked, "separate": sep})
    return rows


def report(rows: list[dict]) -> None:
    for r in rows:
        (wa, ca, _), (ws, cs, ms), n = r["alone"], r["stacked"], r["seeds"]
        sep = (f"{r['separate'][0]:.1f} s measured (joblib, 2 workers)" if r["separate"]
               else f"~{n * wa:.0f} s (N x one seed, one after another)")
        print(f"  {r['data']:8s} {n:3d} seeds stacked: {ws:6.1f} s wall ({cs:6.1f} s CPU), peak RSS {ms / 2**20:6.0f} MiB"
              f" | one seed alone {wa:5.1f} s ({ca:5.1f} s CPU) -> stacked/alone {ws / wa:4.2f}x wall, "
              f"{cs / ca:4.2f}x CPU | {n} separate jobs {sep}", flush=True)

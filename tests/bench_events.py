"""How much does reading cached frames cost per training epoch, against tensors in memory?

Writes a synthetic DVSGesture-shaped set (128x128 events, the paper's recipe: 32x32 frames,
3 ms bins, 100 steps, batch 16, the 2-16-32 csnn), fills the frame cache with one pass, then
times one training epoch (Lightning, no validation) alternately from the disk cache
(EventDataModule) and from the same frames held as tensors (InMemoryDataModule); best of
``--repeats`` each. Usage:

    .venv/bin/python tests/bench_events.py [--users 10] [--events 20000] [--repeats 3]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate

sys.path.insert(0, str(Path(__file__).parent))
from conftest import compose_cfg  # noqa: E402
from eventfiles import write_dvsgesture  # noqa: E402

from qsnn.data.inmemory import InMemoryDataModule  # noqa: E402
from qsnn.run.runner import build_module  # noqa: E402


class FramesInMemory(InMemoryDataModule):
    def __init__(self, x, y, input_shape, num_classes, **kw):
        super().__init__(**kw)
        self.x, self.y, self.input_shape, self.num_classes = x, y, input_shape, num_classes

    def load(self):
        return {s: (self.x, self.y) for s in ("train", "val", "test")}


def epoch_time(module, dm) -> float:
    trainer = L.Trainer(max_epochs=1, limit_val_batches=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    t = time.perf_counter()
    trainer.fit(module, datamodule=dm)
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=10, help="11 samples per user and split")
    ap.add_argument("--events", type=int, default=20000, help="events per recording")
    ap.add_argument("--duration-ms", type=int, default=1500)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_dvsgesture(root, users=a.users, events=a.events, duration_ms=a.duration_ms)
        cfg = compose_cfg(["experiment=qsnn_dvsgesture", f"data.root={root}", f"data.cache_dir={root / 'cache'}"])
        cached = instantiate(cfg.data)
        cached.prepare_data()
        cached.setup()
        train = cached.splits["train"]
        t = time.perf_counter()
        frames = [train[i] for i in range(len(train))]  # builds the cache
        build_s = time.perf_counter() - t
        x, y = torch.stack([f[0] for f in frames]), torch.tensor([f[1] for f in frames])
        memory = FramesInMemory(x, y, cached.input_shape, cached.num_classes, batch_size=cached.batch_size,
                                num_steps=cached.num_steps, encoding="none", seed=0)
        memory.setup()

        def read_pass(dm) -> float:  # best of 3 passes over the train loader, no model
            best = float("inf")
            for _ in range(3):
                t = time.perf_counter()
                for _ in dm.train_dataloader():
                    pass
                best = min(best, time.perf_counter() - t)
            return best

        read_s, read_mem_s = read_pass(cached), read_pass(memory)
        L.seed_everything(0, verbose=False)
        module = build_module(cfg, cached)
        epoch_time(module, memory)  # warm-up (allocator, first-call overheads)
        times = {"cached": [], "memory": []}
        for r in range(a.repeats):  # alternate which goes first: the machine's load drifts
            order = [("memory", memory), ("cached", cached)][:: 1 if r % 2 == 0 else -1]
            for key, dm in order:
                times[key].append(epoch_time(module, dm))
    mem, cac = min(times["memory"]), min(times["cached"])
    print(f"train samples {len(train)}, frames {tuple(x.shape[1:])}, batch {cached.batch_size}, "
          f"threads {a.threads}")
    print(f"cache build (first pass, events -> frames -> .npy): {build_s:.2f} s")
    print(f"loader pass only (no model): cached {read_s:.3f} s, in memory {read_mem_s:.3f} s")
    print(f"epoch from tensors in memory: {mem:.2f} s   (all: {', '.join(f'{v:.2f}' for v in times['memory'])})")
    print(f"epoch from cached frames:     {cac:.2f} s   (all: {', '.join(f'{v:.2f}' for v in times['cached'])})")
    print(f"overhead of cached loading: {100 * (cac / mem - 1):+.1f}% of an epoch (epoch times); "
          f"{100 * (read_s - read_mem_s) / mem:+.1f}% (extra loader time / in-memory epoch)")


if __name__ == "__main__":
    main()

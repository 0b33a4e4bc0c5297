"""Run the QSNN paper's three recipes (MNIST, Fashion-MNIST, DVS128 Gesture) at a stated CPU
budget and print our test accuracy next to the paper's and the reference code's figures
(src/reproduce.yaml, with their sources). ``make reproduce`` (ARGS="--epochs 2 ...").

    python src/reproduce.py                        # data under ./data, 1 epoch, T=25, 32 and 4 bits
    python src/reproduce.py --data-root /data --epochs 5 --datasets mnist
    python src/reproduce.py --mnist-root ~/mnist --fmnist-root ~/fashion   # flat dirs, one dataset each

Each dataset is read from where it can only be that dataset: under ``--data-root`` its own folder
(``MNIST/raw``, ``FashionMNIST/raw``, tonic's ``DVSGesture``), or the root given for it alone
(``--mnist-root``, ``--fmnist-root``: the four IDX files may lie flat there; ``--dvsgesture-root``).
MNIST and Fashion-MNIST share file names, so a flat dir is never read as both; two recipes that
would read the same files are one error line, before anything trains. A dataset whose files are
missing is skipped with one line saying what to put where; the files each row trains on are
printed. Each run is ``src/train.py experiment=<recipe> data.root=... quant.bits=<b>
trainer.max_epochs=<epochs> data.num_steps=<T>`` (the recipe otherwise unchanged: all training
images, no validation set, the last weights tested); its output dir is under ``--out``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
FACTS = Path(__file__).with_name("reproduce.yaml")


def data_root(name: str, args) -> tuple[Path, bool]:
    """(root, whether the files may lie flat in it): ``--<name>-root`` if given, else ``--data-root``."""
    own = getattr(args, f"{name}_root")
    return (own, True) if own is not None else (args.data_root, False)


def data_files(spec: dict, root: Path, flat: bool) -> list[Path]:
    """The files (IDX) or the folder (tonic) the recipe trains on; DataFileError when missing."""
    from qsnn.data.idx import find_idx_files
    from qsnn.data.tonic_sets import SETS, check_files

    if spec["kind"] == "idx":
        return sorted(p.resolve() for p in find_idx_files(root, spec["name"], flat).values())
    for split in ("train", "test"):
        check_files(spec["name"], root, split)
    return [(Path(root).expanduser() / SETS[spec["name"]].tonic_class).resolve()]


def same_files(found: dict[str, list[Path]]) -> str | None:
    """One line when two recipes would read the same files."""
    names = list(found)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if shared := sorted(set(found[a]) & set(found[b])):
                return (f"{a} and {b} would both train on {shared[0].parent} ({', '.join(p.name for p in shared)}): "
                        f"give each dataset a dir of its own (--{a}-root and --{b}-root, or <root>/MNIST/raw and "
                        "<root>/FashionMNIST/raw under --data-root)")
    return None


def run_recipe(experiment: str, root: Path, bits: int, args, out: Path, flat: bool = False) -> dict:
    """One recipe through the real entry point; its summary.json."""
    cmd = [sys.executable, str(ROOT / "src" / "train.py"), f"experiment={experiment}", f"data.root={root}",
           *(["data.flat_root=true"] if flat else []),
           f"quant.bits={bits}", f"trainer.max_epochs={args.epochs}", f"data.num_steps={args.num_steps}",
           f"seed={args.seed}", f"torch_threads={args.threads}", f"hydra.run.dir={out}", "print_config=false",
           "logger=csv", *(["model.fc_bias=true"] if bits == 32 else []),  # the reference's fp32 fc has a bias
           *args.overrides]
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    path = out / "summary.json"
    if not path.is_file():
        return {"status": "failed", "error": (r.stderr.strip().splitlines() or ["no output"])[-1], "metrics": {}}
    return json.loads(path.read_text())


def fmt(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", type=Path, default=ROOT / "data",
                    help="holds each dataset in its own folder: MNIST/raw, FashionMNIST/raw, DVSGesture")
    for name, what in (("mnist", "MNIST"), ("fmnist", "Fashion-MNIST"), ("dvsgesture", "DVS128 Gesture")):
        ap.add_argument(f"--{name}-root", type=Path, default=None,
                        help=f"{what} alone: its files may lie flat in this dir (instead of under --data-root)")
    ap.add_argument("--datasets", nargs="+", default=["mnist", "fmnist", "dvsgesture"],
                    choices=["mnist", "fmnist", "dvsgesture"])
    ap.add_argument("--bits", nargs="+", type=int, default=[32, 4])
    ap.add_argument("--epochs", type=int, default=1, help="training epochs per run (the budget)")
    ap.add_argument("--num-steps", type=int, default=25, help="time steps T (the paper: 100)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", type=Path, default=ROOT / "logs" / "reproduce" / time.strftime("%Y-%m-%d_%H-%M-%S"))
    ap.add_argument("overrides", nargs="*", help="extra src/train.py overrides for every run")
    args = ap.parse_args(argv)
    facts = yaml.safe_load(FACTS.read_text())
    from qsnn.errors import DataFileError
    print(f"budget per run: {args.epochs} epoch(s), T={args.num_steps}, seed {args.seed}, {args.threads} thread(s) "
          f"on {os.cpu_count()} CPUs; data.root={args.data_root}; runs in {args.out}", flush=True)
    found: dict[str, list[Path]] = {}
    for name in args.datasets:  # every dataset's files first: nothing trains when two recipes share them
        root, flat = data_root(name, args)
        try:
            found[name] = data_files(facts[name]["data"], root, flat)
        except DataFileError as e:
            own = f"; or give its own dir with --{name}-root" if not flat and facts[name]["data"]["kind"] == "idx" \
                else ""
            print(f"{name}: no data, skipped: {e}{own}", flush=True)
    if clash := same_files(found):
        print(f"error: ConfigError: {clash}", file=sys.stderr)
        return 1
    rows = []
    for name, files in found.items():
        spec = facts[name]
        root, flat = data_root(name, args)
        print(f"{name}: trains on {files[0].parent}" + (f" ({', '.join(p.name for p in files)})" if len(files) > 1
                                                          else ""), flush=True)
        for bits in args.bits:
            t = time.perf_counter()
            s = run_recipe(spec["experiment"], root, bits, args, args.out / f"{name}_bits{bits}", flat)
            acc = s.get("metrics", {}).get("test/acc")
            ref = spec.get("reference_code") or {}
            rows.append((name, bits, None if acc is None else 100 * acc, spec["paper_test_acc"].get(bits),
                         (ref.get("test_acc") or {}).get(bits), time.perf_counter() - t,
                         s.get("status"), s.get("error", "")))
            print(f"{name} {bits}-bit: {s.get('status')} test/acc {fmt(rows[-1][2])}% "
                  f"({rows[-1][5]:.0f} s){'  ' + s.get('error', '') if s.get('status') != 'ok' else ''}", flush=True)
    if rows:
        print(f"\n| dataset | bits | ours: test acc % ({args.epochs} ep, T={args.num_steps}) | paper % "
              f"| reference code % | wall s |\n|---|---|---|---|---|---|")
        for name, bits, ours, paper, ref, wall, _, _ in rows:
            print(f"| {name} | {bits} | {fmt(ours)} | {fmt(paper)} | {fmt(ref)} | {wall:.0f} |")
        print("\nSources (src/reproduce.yaml):")
        for name in dict.fromkeys(r[0] for r in rows):
            spec = facts[name]
            print(f"- {name}: paper: {spec['paper_source']}" + (
                f"; reference code: {spec['reference_code']['source']} ({spec['reference_code']['budget']})"
                if spec.get("reference_code") else "") + f"; ours trained on: {', '.join(map(str, found[name]))}")
        print("The paper reports the best per-epoch test accuracy of 3 trials over up to 500 epochs; "
              "ours is the last epoch's test accuracy of one run at the budget above.")
    return 0 if all(r[6] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

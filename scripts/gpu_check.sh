#!/usr/bin/env bash
# Issue 21's GPU check, prepared for the device machine (nvidia-h200: see /work/.library/device/README.md).
#
# 1. Here, once (pip reaches the package index here, not there): the wheels its image lacks, into .whl/
#    (ignored by git through .git/info/exclude):
#        scripts/gpu_check.sh wheels
# 2. There, through the device tool, in about 4 minutes of the 5 it is sized for:
#        run(command="bash scripts/gpu_check.sh", carry=[".whl"], timeout_s=420)
#    It installs the wheels, runs tests/test_lif_triton.py (the interpreter tests on the CPU, then the
#    same comparisons with the compiled kernels on CUDA, one process per surrogate), then
#    `python -m qsnn.bench --device cuda` (csnn/fcsnn at B=128 and 1024: snnTorch loop, fused torch,
#    Triton, Triton + whole-step CUDA graph; the Open Neuromorphic benchmark at n=512/4096/16384 for
#    qsnn, snnTorch and SpikingJelly; experiment=qsnn_mnist and a randman job through src/train.py).
#    COMPILE=1 adds net.compile(mode="reduce-overhead") for csnn B=128 (compiling takes minutes).
#    The log is also written to $OUT/gpu_check.log (it comes back with the reply).
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = wheels ]; then  # versions as in the dev venv; all pure-Python wheels (about 2 MB)
    py=${PYTHON:-.venv/bin/python}
    $py -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform any -d .whl \
        hydra-core==1.3.8 omegaconf==2.3.1 hydra-colorlog==1.2.0 colorlog==6.12.0 snntorch==1.0.0 \
        spikingjelly==2.0.0 loguru==0.7.3
    $py -m pip wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3  # an sdist only: build it here
    grep -qx "/.whl/" .git/info/exclude 2>/dev/null || echo "/.whl/" >> .git/info/exclude
    ls .whl
    exit 0
fi

OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH="/tmp/site:$PWD/src" PYTHONUNBUFFERED=1 WANDB_MODE=disabled

step() {  # step NAME SECONDS COMMAND...: run with a time limit, log it, say how long it took
    local name=$1 limit=$2 t=$SECONDS
    shift 2
    echo "== $name" | tee -a "$LOG"
    timeout "$limit" "$@" 2>&1 | tee -a "$LOG"
    echo "== $name: exit ${PIPESTATUS[0]}, $((SECONDS - t)) s" | tee -a "$LOG"
}

step "device" 30 bash -c 'nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader;
    python3 -c "import torch, triton; print(\"torch\", torch.__version__, \"triton\", triton.__version__, torch.cuda.get_device_name())"'
step "LIF kernel tests (interpreter on CPU, compiled on CUDA)" 150 python3 -m pytest tests/test_lif_triton.py -q -p no:cacheprovider
step "bench (GPU sections, Open Neuromorphic, train.py runs)" 240 python3 -m qsnn.bench --device cuda --repeats 20 --on-repeats 5
if [ "${COMPILE:-0}" = 1 ]; then
    step "bench with compile=reduce-overhead (csnn B=128)" 240 python3 -m qsnn.bench --device cuda --cases csnn \
        --gpu-batches 128 --compile --on-sizes '' --no-train-run
fi

# Every target that needs the environment creates .venv when missing.
# torch is installed FIRST from the local CPU wheel; everything else must not pull another torch.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
ARGS   ?=

.PHONY: install train test bench sweep sweep-quick reproduce clean
install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev,tensorboard]"
	# neurobench only with --no-deps (its deps pull torchaudio); tests cross-check our cost metrics with it
	$(PY) -m pip install -q --no-deps "neurobench>=2.3,<3"
	touch $(STAMP)

train: install
	$(PY) src/train.py $(ARGS)

test: install
	$(PY) -m pytest tests $(ARGS)

# snnTorch loop vs fast path, side by side (ARGS="--threads 1" on a loaded machine; see src/qsnn/cost/bench.py)
bench: install
	$(PY) -m qsnn.bench $(ARGS)

# The paper's three recipes (MNIST, Fashion-MNIST, DVSGesture) next to its figures (src/reproduce.yaml);
# ARGS="--data-root /path --epochs 1 --num-steps 25" (the default budget); no data: one line per dataset
reproduce: install
	$(PY) src/reproduce.py $(ARGS)

# Studies are Hydra sweep configs in sweeps/ (see sweeps/README.md); the report lands in the sweep dir.
# A study with a protocol: block runs tune -> confirmation rounds -> report (## Verdict); a plain grid
# (SWEEP=grid) runs its grid. Continue a stopped study: make sweep SWEEP_DIR=<its dir>.
SWEEP     ?= standard
N_JOBS    ?= 2
SWEEP_DIR ?= logs/sweeps/$(SWEEP)/$(shell date +%Y-%m-%d_%H-%M-%S)
sweep: install
	$(PY) src/study.py $(SWEEP) --dir $(SWEEP_DIR) --n-jobs $(N_JOBS) $(ARGS)

sweep-quick:
	$(MAKE) sweep SWEEP=quick

clean:
	rm -rf logs .pytest_cache

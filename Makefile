# gcnn-repro: `make demo` runs the CPU demo, `make test` the test suite; `make help` lists the rest.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
comma  := ,

# Extra overrides for every training command of a target, e.g. ARGS="data.verify_checksums=false"
ARGS ?=

# The sweeps (make demo, reproduce-table, reproduce-data-efficiency, reproduce-rot-flip) are defined once in
# repro/sweeps.py and run by scripts/sweep.py NAME; an empty variable means the sweep's own value there.
# make demo: the CPU demo on rotated digits (minutes), into DEMO_OUT (untracked: results/latest/demo), printed
# beside the committed record results/demo/; RECORD=1 rewrites the record instead.
DEMO_SIZES  ?=
DEMO_SEEDS  ?=
DEMO_EPOCHS ?=
DEMO_STEPS  ?=
DEMO_DIR    ?=
DEMO_OUT    ?=
RECORD      ?=

# make reproduce-table: the paper's CIFAR protocol (GPU); DATA=cifar_folder FORMAT=cifar100 for your own folder
DATA      ?=
FORMAT    ?=
SEEDS     ?=
EPOCHS    ?=
AUGMENTS  ?=
LAUNCHER  ?=
FORCE     ?=
DEVICE    ?=
SWEEP_DIR ?=
TABLE_OUT ?=
# make reproduce-data-efficiency: training-set sizes and the sweep folder
EFF_SIZES ?=
EFF_DIR   ?=
# option VALUE when the variable is set: $(call opt,--seeds,$(SEEDS))
opt = $(if $(2),$(1) $(2))
SWEEP = FORCE=$(FORCE) $(PY) scripts/sweep.py
SWEEP_ARGS = $(call opt,--data,$(DATA)) $(call opt,--format,$(FORMAT)) $(call opt,--seeds,$(SEEDS)) \
	$(call opt,--epochs,$(EPOCHS)) $(call opt,--launcher,$(LAUNCHER)) --report-args="$(REPORT_ARGS)" \
	$(if $(DEVICE),device=$(DEVICE)) $(ARGS)

# make bench: escnn (the external anchor) lives in its own venv, see bench-escnn
BENCH_VENV ?= .venv-bench
BENCH_PY   := $(if $(wildcard $(BENCH_VENV)/bin/python),$(BENCH_VENV)/bin/python,$(PY))
ESCNN_PINS := escnn==1.0.11 lie_learn==0.0.2 py3nj==0.2.1 pymanopt==2.2.1 autograd==1.9.1 numpy==1.26.4 scikit-learn==1.5.2

# make report: any run folders
RUNS ?= $(or $(wildcard runs multirun),runs)
OUT  ?= results/latest
REPORT_ARGS ?=

.PHONY: help install test test-slow demo figures reproduce-table reproduce-data-efficiency reproduce-rot-flip reproduce-rotmnist gpu-check report bench bench-quick bench-epoch bench-e2e bench-compile bench-escnn models-table clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)  ## create .venv with the pinned stack

test: install  ## the default test suite (slow tests excluded)
	$(PY) -m pytest -q -n 2 --durations=15

test-slow: install  ## only the tests marked slow
	$(PY) -m pytest -q -m slow

demo: install  ## CPU demo: z2/p4/p4m x sizes on rotated digits, printed beside results/demo/ (RECORD=1 rewrites it)
	$(SWEEP) demo $(call opt,--train-sizes,$(DEMO_SIZES)) $(call opt,--seeds,$(DEMO_SEEDS)) \
		$(call opt,--epochs,$(DEMO_EPOCHS)) $(call opt,--steps-per-epoch,$(DEMO_STEPS)) $(call opt,--dir,$(DEMO_DIR)) \
		$(call opt,--out,$(DEMO_OUT)) $(if $(RECORD),--record) --report-args="$(REPORT_ARGS)" $(ARGS)

figures: install  ## the equivariance picture: results/figures/equivariance_{p4,p4m}.{png,gif}
	$(PY) scripts/figures.py --out results/figures

reproduce-table: install  ## the paper's CIFAR table (GPU; DATA= SEEDS= EPOCHS= AUGMENTS= LAUNCHER= FORCE=1)
	$(SWEEP) table $(call opt,--augments,$(AUGMENTS)) $(call opt,--dir,$(SWEEP_DIR)) $(call opt,--out,$(TABLE_OUT)) \
		$(SWEEP_ARGS)

reproduce-data-efficiency: install  ## All-CNN-C z2/p4/p4m at 1k/5k/10k/50k CIFAR images, equal steps (GPU)
	$(SWEEP) data-efficiency $(call opt,--train-sizes,$(EFF_SIZES)) $(call opt,--dir,$(EFF_DIR)) $(SWEEP_ARGS)

reproduce-rot-flip: install  ## the post's finding: 90-degree rotation + flip augmentation hurts on CIFAR
	$(SWEEP) rot-flip $(call opt,--dir,$(SWEEP_DIR)) $(call opt,--out,$(TABLE_OUT)) $(SWEEP_ARGS)

reproduce-rotmnist: install  ## Table 1 on MNIST-rot, seeds 0-4 (CPU: hours; DEVICE= SEEDS= EPOCHS= ARGS= LAUNCHER=)
	$(SWEEP) rotmnist $(call opt,--dir,$(SWEEP_DIR)) $(call opt,--out,$(TABLE_OUT)) $(SWEEP_ARGS)

gpu-check: install  ## GPU machine, < 8 min: CUDA tests, paper recipes vs plain same-MAC nets, 2-epoch runs -> results/bench/<gpu>.md
	$(PY) scripts/gpu_check.py --out results/bench $(GPU_CHECK_ARGS)

report: install  ## table and plots from RUNS=<folders> into OUT=<folder> (REPORT_ARGS=--wandb ...)
	$(PY) scripts/report.py $(RUNS) --out $(OUT) $(REPORT_ARGS)

bench: install  ## layer overhead and training throughput -> results/bench/<device>.md (BENCH_ARGS=...)
	$(BENCH_PY) scripts/bench.py --out results/bench $(BENCH_ARGS)

bench-epoch: install  ## MNIST-rot epoch time, trainer vs bare loop (CPU, ~20 min) -> results/bench/
	$(PY) scripts/bench_epoch.py --out results/bench $(BENCH_ARGS)

bench-quick: install  ## benchmark smoke run (< 1 min) -> results/bench/<device>-quick.md
	$(BENCH_PY) scripts/bench.py --quick --out results/bench

bench-e2e: install  ## time `make demo` and `make test`, merged into results/bench/<device>.md
	$(BENCH_PY) scripts/bench.py --e2e --skip layers training compile --merge --out results/bench

bench-compile: install  ## inductor compile of every model (slow on CPU), merged into the report
	$(BENCH_PY) scripts/bench.py --compile-models inductor --skip layers training --merge --out results/bench

bench-escnn: install  ## optional escnn anchor in .venv-bench (needs gfortran: apt-get install gfortran)
	@command -v gfortran >/dev/null || { echo "escnn needs gfortran: apt-get install gfortran"; exit 1; }
	$(PY) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install -q --no-deps $(ESCNN_PINS)
	$(BENCH_VENV)/bin/python -c "import site, sys; open(site.getsitepackages()[0] + '/zz_project.pth', 'w').write('import site; site.addsitedir(%r)\\n' % sys.argv[1])" "$$($(PY) -c 'import site; print(site.getsitepackages()[0])')"

models-table: install  ## params / MACs / invariance of every model -> results/models.md
	$(PY) scripts/models_table.py --out results/models.md

clean:  ## remove caches and build files (never results/, runs/ or multirun/)
	rm -rf .pytest_cache .hypothesis build dist outputs
	find . -name __pycache__ -type d -not -path "./.venv/*" -prune -exec rm -rf {} +

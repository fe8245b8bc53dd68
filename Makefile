# gcnn-repro: `make demo` runs the CPU demo, `make test` the test suite; `make help` lists the rest.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
comma  := ,

# Extra overrides for every training command of a target, e.g. ARGS="data.verify_checksums=false"
ARGS ?=

# make demo: the embedded default (rotated digits, CPU, minutes). Every run gets the same
# optimiser-step budget: DEMO_EPOCHS epochs of DEMO_STEPS steps (8 = one pass over all 1000 digits): 160 steps.
DEMO_SIZES  ?= 100,300,null
DEMO_SEEDS  ?= 0,1
DEMO_EPOCHS ?= 20
DEMO_STEPS  ?= 8
DEMO_DIR    ?= multirun/demo
DEMO_OUT    ?= results/demo

# make reproduce-table: the paper's CIFAR protocol (GPU); DATA=cifar_folder FORMAT=cifar100 for your own folder
DATA      ?= cifar10
FORMAT    ?=
SEEDS     ?= 0,1,2
EPOCHS    ?=
AUGMENTS  ?= none,crop_flip
LAUNCHER  ?= basic
FORCE     ?=
SWEEP_DIR ?= multirun/paper_$(DATA)_$(subst $(comma),_,$(AUGMENTS))
TABLE_OUT ?= results/$(DATA)$(if $(filter-out none$(comma)crop_flip,$(AUGMENTS)),_$(subst $(comma),_,$(AUGMENTS)))
DATA_ARGS  = data=$(DATA) $(if $(FORMAT),data.format=$(FORMAT)) $(if $(EPOCHS),epochs=$(EPOCHS)) $(ARGS)

# make bench: escnn (the external anchor) lives in its own venv, see bench-escnn
BENCH_VENV ?= .venv-bench
BENCH_PY   := $(if $(wildcard $(BENCH_VENV)/bin/python),$(BENCH_VENV)/bin/python,$(PY))
ESCNN_PINS := escnn==1.0.11 lie_learn==0.0.2 py3nj==0.2.1 pymanopt==2.2.1 autograd==1.9.1 numpy==1.26.4 scikit-learn==1.5.2

# make report: any run folders
RUNS ?= $(or $(wildcard runs multirun),runs)
OUT  ?= results/latest
REPORT_ARGS ?=

.PHONY: help install test test-slow demo figures reproduce-table reproduce-data-efficiency reproduce-rot-flip gpu-check report bench bench-quick bench-e2e bench-compile bench-escnn models-table clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)  ## create .venv with the pinned stack

test: install  ## the default test suite (slow tests excluded)
	$(PY) -m pytest -q

test-slow: install  ## only the tests marked slow
	$(PY) -m pytest -q -m slow

demo: install  ## CPU demo: z2/p4/p4m x training-set sizes on rotated digits -> results/demo/ (ARGS=...)
	$(PY) scripts/train.py -m group=z2,p4,p4m data.train_size=$(DEMO_SIZES) seed=$(DEMO_SEEDS) \
		epochs=$(DEMO_EPOCHS) steps_per_epoch=$(DEMO_STEPS) hydra.sweep.dir=$(DEMO_DIR) $(ARGS)
	$(PY) scripts/report.py $(DEMO_DIR) --out $(DEMO_OUT) $(REPORT_ARGS)

figures: install  ## the equivariance picture: results/figures/equivariance_{p4,p4m}.{png,gif}
	$(PY) scripts/figures.py --out results/figures

reproduce-table: install  ## the paper's CIFAR table (GPU; DATA= SEEDS= EPOCHS= AUGMENTS= LAUNCHER= FORCE=1)
	FORCE=$(FORCE) $(PY) scripts/plan_sweep.py --data $(DATA) $(if $(FORMAT),--format $(FORMAT)) --augments $(AUGMENTS) --seeds $(SEEDS) \
		$(if $(EPOCHS),--epochs $(EPOCHS))
	$(PY) scripts/train.py -m experiment=paper_allcnnc group=z2,p4,p4m augment=$(AUGMENTS) \
		seed=$(SEEDS) hydra/launcher=$(LAUNCHER) hydra.sweep.dir=$(SWEEP_DIR)/allcnnc $(DATA_ARGS)
	$(PY) scripts/train.py -m experiment=paper_resnet44 group=z2,p4m augment=$(AUGMENTS) \
		seed=$(SEEDS) hydra/launcher=$(LAUNCHER) hydra.sweep.dir=$(SWEEP_DIR)/resnet44 $(DATA_ARGS)
	$(PY) scripts/report.py $(SWEEP_DIR) --out $(TABLE_OUT) $(REPORT_ARGS)

# make reproduce-data-efficiency: the same All-CNN-C recipe on class-balanced subsets, every size
# with the optimiser steps of full-data training (391 = ceil(50000 / 128) steps per epoch)
EFF_SIZES ?= 1000,5000,10000,null
EFF_DIR   ?= multirun/data_efficiency_$(DATA)

reproduce-data-efficiency: install  ## All-CNN-C z2/p4/p4m at 1k/5k/10k/50k CIFAR images, equal steps (GPU)
	FORCE=$(FORCE) $(PY) scripts/plan_sweep.py --data $(DATA) $(if $(FORMAT),--format $(FORMAT)) --networks allcnnc \
		--augments none --seeds $(SEEDS) --train-sizes $(EFF_SIZES) --equal-steps $(if $(EPOCHS),--epochs $(EPOCHS))
	$(PY) scripts/train.py -m experiment=paper_allcnnc group=z2,p4,p4m data.train_size=$(EFF_SIZES) \
		steps_per_epoch=391 seed=$(SEEDS) hydra/launcher=$(LAUNCHER) hydra.sweep.dir=$(EFF_DIR) $(DATA_ARGS)
	$(PY) scripts/report.py $(EFF_DIR) --out results/data_efficiency_$(DATA) $(REPORT_ARGS)

reproduce-rot-flip:  ## the post's finding: 90-degree rotation + flip augmentation hurts on CIFAR
	$(MAKE) reproduce-table AUGMENTS=none,rot_flip

gpu-check: install  ## GPU machine, < 8 min: CUDA tests, paper recipes vs plain same-MAC nets, 2-epoch runs -> results/bench/<gpu>.md
	$(PY) scripts/gpu_check.py --out results/bench $(GPU_CHECK_ARGS)

report: install  ## table and plots from RUNS=<folders> into OUT=<folder> (REPORT_ARGS=--wandb ...)
	$(PY) scripts/report.py $(RUNS) --out $(OUT) $(REPORT_ARGS)

bench: install  ## layer overhead and training throughput -> results/bench/<device>.md (BENCH_ARGS=...)
	$(BENCH_PY) scripts/bench.py --out results/bench $(BENCH_ARGS)

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
	$(PY) scripts/models.py --out results/models.md

clean:  ## remove caches and build files (never results/, runs/ or multirun/)
	rm -rf .pytest_cache .hypothesis build dist outputs
	find . -name __pycache__ -type d -not -path "./.venv/*" -prune -exec rm -rf {} +

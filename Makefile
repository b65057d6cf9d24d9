# mfg-study: the three entry points. Each creates .venv/ on first use and installs the project with
# every backend into it (torch is pinned to the local CPU wheel, see pyproject.toml).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.mfg-installed
CORES ?= 8

.PHONY: study test bench test-cluster venv clean-results clean-cache

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned: any other spec pulls a multi-GB CUDA build
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e ".[all]"
	# study files given to snakemake --configfile are read strictly (file, line and key in errors)
	$(BIN)/python -c "import mfg_study.snakemake_hook as h; print('wrote', h.install())"
	touch $(STAMP)

study: $(STAMP)
	$(BIN)/snakemake --cores $(CORES)

test: $(STAMP)
	$(BIN)/python -m pytest -q

# Starts a real single-node SLURM on loopback (installs it with apt if missing; needs root), runs a
# tiny study through profiles/slurm, compares it with a local run, and tears SLURM down.
test-cluster: $(STAMP)
	MFG_CLUSTER=1 $(BIN)/python -m pytest -q tests/cluster

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean-results:
	rm -rf results/*
	touch results/.gitkeep

# compiled code (numba, jax) and the solve cache the workflow keeps (config key cache_dir)
clean-cache:
	rm -rf .cache/mfg-study

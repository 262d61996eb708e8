# Each target creates .venv and installs what it needs: torch first (the pinned CPU build, never an
# unpinned torch, which would pull a multi-GB CUDA build), then fusionrt with its dev extra.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench study

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

demo: $(STAMP)
	$(BIN)/fusionrt demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/export_vs_torch.py
	if [ -d bundles/demo ]; then $(BIN)/fusionrt bench bundles/demo --json benchmarks/results/bench_demo.json \
	  --csv benchmarks/results/bench_demo.csv --markdown benchmarks/results/bench_demo.md \
	  --png benchmarks/results/bench_demo.png; fi

# The effectiveness study (demo config, 3 seeds): tables, charts and JSON into benchmarks/results/study.*;
# trained runs and bundles into runs/study/.
study: $(STAMP)
	$(BIN)/fusionrt study --config configs/demo.yaml --seeds 0,1,2 --out benchmarks/results --work runs/study

# Each target creates .venv and installs what it needs: torch first (the pinned CPU build, never an
# unpinned torch, which would pull a multi-GB CUDA build), then fusionrt with its dev extra.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench bench-seed study triton-venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

demo: $(STAMP)
	$(BIN)/fusionrt demo

# The Triton tests' server (tritonserver from nvidia-pytriton, numpy<2) lives in its own venv; when it cannot be
# installed, .venv-triton/.failed says why and those tests skip with that reason.
triton-venv:
	PYTHON=$(PYTHON) bash tools/triton_ci/make_venv.sh .venv-triton

test: $(STAMP) triton-venv
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/export_vs_torch.py
	if [ -d bundles/demo ]; then $(BIN)/fusionrt bench bundles/demo --json benchmarks/results/bench_demo.json \
	  --csv benchmarks/results/bench_demo.csv --markdown benchmarks/results/bench_demo.md \
	  --png benchmarks/results/bench_demo.png; fi

# The seed system at real size (configs/seed.yaml: BERT-base + ResNet-50 + MFCC): trained briefly, exported,
# quantized (auto) and evaluated through the normal commands when runs/seed or bundles/seed is missing, then
# components, INT8 accuracy, streaming under a 100 ms budget and memory into benchmarks/results/seed.{md,json}.
bench-seed: $(STAMP)
	test -f runs/seed/model.safetensors || $(BIN)/fusionrt train --config configs/seed.yaml --out runs/seed
	test -f bundles/seed/manifest.json || { $(BIN)/fusionrt export --config runs/seed/config.yaml \
	  --checkpoint runs/seed/model.safetensors --out bundles/seed && \
	  $(BIN)/fusionrt quantize bundles/seed --calib builtin --mode auto --count 64 && \
	  $(BIN)/fusionrt eval bundles/seed --variants fp32,int8,default --count 200; }
	$(BIN)/python benchmarks/seed.py --bundle bundles/seed

# The effectiveness study (demo config, 3 seeds): tables, charts and JSON into benchmarks/results/study.*;
# trained runs and bundles into runs/study/.
study: $(STAMP)
	$(BIN)/fusionrt study --config configs/demo.yaml --seeds 0,1,2 --out benchmarks/results --work runs/study

# `make demo` and `make test` each set up .venv (pinned deps, CPU torch) on first use, then run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SKY_VENV := .venv-sky
SKY_STAMP := $(SKY_VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export WANDB_MODE ?= offline
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test bench schemas clean chromium

$(STAMP): pyproject.toml setup.py src/nexa/data/_minhash.c
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	$(BIN)/python -c "import torch, sys; v = torch.__version__; sys.exit(0 if v.startswith('2.13.0') else f'torch {v} was pulled in; expected 2.13.0')"
	touch $(STAMP)

# SkyPilot in its own environment (it pins click<8.2, the lab needs click>=8.2); nexa drives it as a separate
# process (nexa.infra.sky_process). Base package only: enough to validate tasks and run `sky status` offline.
$(SKY_STAMP):
	test -d $(SKY_VENV) || $(PYTHON) -m venv $(SKY_VENV)
	$(SKY_VENV)/bin/pip install --quiet 'skypilot==0.14.1'
	$(SKY_VENV)/bin/python -c "import importlib.util, sys; sys.exit('torch was pulled into $(SKY_VENV)' if importlib.util.find_spec('torch') else 0)"
	touch $(SKY_STAMP)

demo: $(STAMP)
	$(BIN)/nexa demo --lab nexa-demo

test: $(STAMP) chromium $(SKY_STAMP)
	$(BIN)/python -m pytest -q --durations=15

# Debian's Chromium for PDF reports and the dashboard's browser tests (Playwright drives it; never `playwright install`).
chromium:
	command -v chromium >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)

bench: $(STAMP)
	$(BIN)/python benchmarks/golden.py --out benchmarks/results/golden.json

schemas: $(STAMP)
	$(BIN)/python -m nexa.ledger.schemas docs/schemas

clean:
	rm -rf nexa-demo .pytest_cache

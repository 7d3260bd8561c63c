# One-command entry points. Every target sets up what it needs first.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export VLLM_CPU_KVCACHE_SPACE ?= 1
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER ?= 0
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup assets test test-fast test-recipe demo lint fmt clean

$(VENV)/.setup-done: requirements/cpu.lock requirements/cpu.in pyproject.toml scripts/setup.sh
	bash scripts/setup.sh $(VENV)

setup: $(VENV)/.setup-done  ## create .venv and install the pinned CPU stack

assets: setup  ## fetch + verify + convert every asset of shared/DATA.md
	$(VENV)/bin/soaes assets fetch

test: assets  ## the test suite (what .ci/run calls)
	$(PY) -m pytest -q tests

test-fast: assets  ## unit tests only: no Ray cluster, DeepSpeed engine or vLLM engine start (under a minute idle)
	$(PY) -m pytest -q -m "not heavy and not recipe and not gpu" tests

test-recipe: assets  ## only the whole tiny recipe end to end (data -> CPT -> SFT arms -> distill -> eval -> report)
	$(PY) -m pytest -q -m recipe tests

demo: assets  ## the demo pipeline on an embedded local Ray with real data and SmolLM2-135M
	$(VENV)/bin/soaes run pipelines/full_demo.yaml

lint: setup
	$(VENV)/bin/ruff check platform tests && $(VENV)/bin/ruff format --check platform tests

fmt: setup
	$(VENV)/bin/ruff format platform tests && $(VENV)/bin/ruff check --fix platform tests

clean:
	rm -rf runs .pytest_cache

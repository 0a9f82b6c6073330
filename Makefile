# memeforge: `make run` to start everything locally, `make test` to run every test.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.memeforge-installed
PYTEST_ARGS ?=

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | \
	  awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml scripts/setup-venv.sh
	VENV=$(VENV) scripts/setup-venv.sh
	@touch $@

.PHONY: setup
setup: $(STAMP) ## create .venv (pillow-simd built from source) and install the project

.PHONY: run
run: $(STAMP) ## start the AWS emulator, bootstrap, and the three services; Ctrl-C stops all
	$(PY) -m devenv.run $(RUN_ARGS)

.PHONY: bootstrap
bootstrap: $(STAMP) ## create bucket/table/queues against $$AWS_ENDPOINT_URL or real AWS
	$(PY) -m memeforge_common.bootstrap

.PHONY: test
test: $(STAMP) ## run the whole test suite (unit, integration, e2e)
	$(PY) -m pytest $(PYTEST_ARGS)

.PHONY: test-unit
test-unit: $(STAMP) ## fast: unit tests only
	$(PY) -m pytest -m unit $(PYTEST_ARGS)

.PHONY: test-integration
test-integration: $(STAMP) ## integration tests against the emulator
	$(PY) -m pytest -m integration $(PYTEST_ARGS)

.PHONY: test-e2e
test-e2e: $(STAMP) ## end-to-end tests: all services as processes
	$(PY) -m pytest -m e2e $(PYTEST_ARGS)

.PHONY: lint
lint: $(STAMP) ## ruff (lint + format check) and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

.PHONY: fmt
fmt: $(STAMP) ## format and auto-fix
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

.PHONY: clean
clean: ## remove the venv, caches and run state
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info .run
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

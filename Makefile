# memeforge: `make run` to start everything locally, `make test` to run every test.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.memeforge-installed
PYTEST_ARGS ?=
# make test on TEST_WORKERS processes (pytest-xdist): its tests mostly wait on emulators and
# services, so two workers use CI's two cores; a module's tests (an e2e module's on one
# backend) stay on one worker, the longest modules first by tests/support/durations.json
# (tests/support/workers.py). TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 2
PYTEST_XDIST := -n $(TEST_WORKERS) --dist loadscope

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | \
	  awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml setup.py scripts/setup-venv.sh services/renderer/memeforge_renderer/engine/_blend.c
	VENV=$(VENV) scripts/setup-venv.sh
	@touch $@

.PHONY: setup
setup: $(STAMP) ## create .venv (pillow-simd built from source) and install the project

.PHONY: setup-localstack
setup-localstack: ## install the "localstack" backend (LocalStack host runtime + DynamoDB Local)
	scripts/setup-localstack.sh

.PHONY: setup-browser
setup-browser: ## install what the web UI tests need: Debian's Chromium (apt) and axe-core (npm)
	scripts/setup-browser.sh

# Where Chromium cannot be installed (no root, no apt), the UI tests are skipped with the
# reason, except where MEMEFORGE_REQUIRE_BROWSER is set (CI).
.PHONY: browser-if-possible
browser-if-possible:
	@scripts/setup-browser.sh || { \
	  echo "warning: no browser for the web UI tests; they will be skipped" >&2; \
	  [ -z "$$MEMEFORGE_REQUIRE_BROWSER" ] || exit 1; }

# make test runs the e2e suite on both backends; where LocalStack cannot be installed
# (no Python 3.13 or Java 17) its tests are skipped with the reason, except in CI.
.PHONY: localstack-if-possible
localstack-if-possible:
	@scripts/setup-localstack.sh || { \
	  echo "warning: the localstack backend is unavailable; its e2e tests will be skipped" >&2; \
	  [ -z "$$MEMEFORGE_REQUIRE_BACKENDS" ] || exit 1; }

.PHONY: run
run: $(STAMP) ## start the AWS emulator, bootstrap, and the three services; Ctrl-C stops all
	$(PY) -m devenv.run $(RUN_ARGS)

.PHONY: chaos
chaos: $(STAMP) localstack-if-possible ## failure drill: 500 memes, kills, 10 s AWS outage, poison
	$(PY) -m bench.chaos $(CHAOS_ARGS)

# Both seeds' runs together take about two minutes on CI's two cores (FUZZ_ARGS="--examples
# 50" digs deeper; "--seed N" replays a random run).
FUZZ_ARGS ?=
.PHONY: fuzz
fuzz: $(STAMP) ## schemathesis on the live stack: every check, stateful, a fixed and a random seed
	$(PY) -m devenv.fuzz $(FUZZ_ARGS)

.PHONY: bootstrap
bootstrap: $(STAMP) ## create bucket, table, queues against AWS_ENDPOINT_URL or real AWS
	$(PY) -m memeforge_common.bootstrap

.PHONY: test
test: $(STAMP) localstack-if-possible browser-if-possible ## the whole suite: unit, integration, e2e on moto + localstack
	$(PY) -m pytest $(PYTEST_XDIST) $(PYTEST_ARGS)

# After adding or much changing a slow module, so that make test starts it early.
.PHONY: test-durations
test-durations: $(STAMP) localstack-if-possible browser-if-possible ## make test, then store each module's seconds in tests/support/durations.json
	$(PY) -m pytest $(PYTEST_XDIST) --store-durations $(PYTEST_ARGS)

.PHONY: test-unit
test-unit: $(STAMP) ## fast: unit tests only
	$(PY) -m pytest -m unit $(PYTEST_ARGS)

.PHONY: test-integration
test-integration: $(STAMP) ## integration tests against the emulator
	$(PY) -m pytest -m integration $(PYTEST_ARGS)

.PHONY: test-e2e
test-e2e: $(STAMP) localstack-if-possible browser-if-possible ## end-to-end tests: all services as processes
	$(PY) -m pytest -m e2e $(PYTEST_ARGS)

# Three independent parts: `make -j3 lint` runs them side by side (CI does).
.PHONY: lint
lint: lint-python lint-deploy audit ## ruff, mypy, pip-audit, and the offline checks of Dockerfiles, compose, k8s

.PHONY: lint-python
lint-python: $(STAMP) ## ruff check, ruff format --check, mypy --strict
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# The images' pinned requirements against PyPI's advisory data (the only service CI can
# reach). Pins are exact, so --no-deps --disable-pip audits them without installing
# anything. A package PyPI's JSON API cannot answer for is listed as skipped, not fatal
# (AUDIT_ARGS=--strict makes it fatal). pillow-simd is built from source, outside these
# files: advisories name its Pillow base version (scripts/setup-venv.sh pins it).
AUDIT_ARGS ?=
.PHONY: audit
audit: $(STAMP) ## pip-audit the images' pinned requirements (PyPI advisories)
	$(VENV)/bin/pip-audit --no-deps --disable-pip --progress-spinner off $(AUDIT_ARGS) \
	  -r requirements/runtime.txt -r requirements/api.txt -r requirements/build.txt

.PHONY: fmt
fmt: $(STAMP) ## format and auto-fix
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

.PHONY: clean
clean: clean-deploy ## remove the venvs, caches and run state
	rm -rf $(VENV) .venv-localstack .cache .pytest_cache .mypy_cache .ruff_cache build *.egg-info .run
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

include mk/deploy.mk
include mk/bench.mk
include mk/credentials.mk

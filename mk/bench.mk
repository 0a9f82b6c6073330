# Render benchmark and golden images (included from the Makefile).
BENCH_ARGS ?=

.PHONY: bench-render
bench-render: $(STAMP) ## render benchmark: floor vs naive vs engine, 800/1600 px, worker RSS
	$(PY) -m bench.render $(BENCH_ARGS)

.PHONY: bench-auth
bench-auth: $(STAMP) ## cost of API keys + rate limit per request (ms, DynamoDB calls)
	$(PY) -m bench.auth $(BENCH_ARGS)

.PHONY: golden-update
golden-update: $(STAMP) ## regenerate tests/golden/*.png after an intended font/drawing change
	$(PY) -m tests.golden.cases --update

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

.PHONY: bench-waiting
bench-waiting: $(STAMP) ## waiting benchmark: 1,000 long-poll/SSE waiters, watcher vs per-client polling
	$(PY) -m bench.waiting $(BENCH_ARGS)

.PHONY: bench-pipeline
bench-pipeline: $(STAMP) ## pipeline cost: memes/s, latency by load, AWS calls, CPU ms and USD per meme
	$(PY) -m bench.pipeline $(BENCH_ARGS)

.PHONY: bench-sdk
bench-sdk: $(STAMP) ## CPU per AWS call in a service process: botocore defaults vs client_config, asyncio vs uvloop
	$(PY) -m bench.sdk_calls $(BENCH_ARGS)

.PHONY: bench-workers
bench-workers: $(STAMP) ## one worker's CPU per meme (renderer main vs pool, or consumer), from /proc
	$(PY) -m bench.worker_cpu $(BENCH_ARGS)

.PHONY: bench-api
bench-api: $(STAMP) ## api CPU per meme (POST + status GET) served by uvicorn; BENCH_ARGS="--base DIR" compares a checkout
	$(PY) -m bench.api_cpu $(BENCH_ARGS)

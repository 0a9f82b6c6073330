"""What API keys and the rate limit cost per request: ms and extra AWS calls.

``python -m bench.auth [--backend moto|localstack] [--requests N]``: one api app in
process (over ASGI, no network hop on the api side) against the emulator over HTTP.
The same route, ``GET /memes/<id>`` (one GetItem, 404), is timed with the real
``authenticate`` dependency (key cache warm: the GCRA UpdateItem is the only extra call)
and with it replaced by a fixed caller (baseline), in alternating batches so that noise
lands on both. DynamoDB calls are counted by a botocore hook on the api's client.
Then ``POST /memes`` (202) the same way: auth, the rate limit, the in-flight cap (its
slot taken in the TransactWriteItems that writes the item) and the back-pressure gate
(queue depth, cached) against a fixed caller with the cap and the gate off; DynamoDB
and SQS calls counted on the api's clients.
Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from memeforge_api.app import create_app
from memeforge_api.auth import Principal, authenticate
from memeforge_common.apikeys import ALL_SCOPES, KeyStore
from memeforge_common.aws import AwsClients
from memeforge_common.bootstrap import bootstrap
from memeforge_common.settings import Settings

from devenv.run.emulator import BACKENDS, start_emulator

MISSING = "0" * 32


async def _time_batch(client: httpx.AsyncClient, n: int) -> list[float]:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        response = await client.get(f"/memes/{MISSING}")
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 404, response.text
    return times


async def _submit_batch(client: httpx.AsyncClient, n: int) -> list[float]:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        response = await client.post("/memes", json={"template_id": "bench", "top": "hi"})
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 202, response.text
    return times


async def _alternate(
    clients: dict[str, httpx.AsyncClient],
    run_batch: Callable[[httpx.AsyncClient, int], Awaitable[list[float]]],
    calls: dict[str, list[str]],
    requests: int,
    batch: int,
) -> dict[str, list[float]]:
    """Time ``requests`` per client in alternating batches (noise lands on both), after a
    warm-up (key cache, queue depth, connections) whose calls are not counted."""
    for client in clients.values():
        await run_batch(client, 5)
    for seen in calls.values():
        seen.clear()
    results: dict[str, list[float]] = {name: [] for name in clients}
    while len(results[next(iter(clients))]) < requests:
        for name, client in clients.items():
            results[name] += await run_batch(client, batch)
    for client in clients.values():
        await client.aclose()
    return results


def count_calls(client: Any, seen: list[str]) -> None:
    """Every call ``client`` makes, by operation name, through the one door that
    aiobotocore's clients and the lean ones (memeforge_common.leanclients) both have."""
    door = client._make_api_call

    async def counted(operation_name: str, params: dict[str, Any]) -> Any:
        seen.append(operation_name)
        return await door(operation_name, params)

    client._make_api_call = counted


def _count_calls(app: Any, seen: list[str]) -> None:
    """Every AWS call the app's DynamoDB and SQS clients make, by operation name."""
    for client in (app.state.store._ddb, app.state.requests._sqs):
        count_calls(client, seen)


def _summary(results: dict[str, list[float]], calls: dict[str, list[str]]) -> dict[str, Any]:
    per = {name: len(seen) / len(results[name]) for name, seen in calls.items()}
    median = {name: statistics.median(times) for name, times in results.items()}
    return {
        "requests": len(results["quota"]),
        "median_ms": median,
        "p95_ms": {name: statistics.quantiles(t, n=20)[-1] for name, t in results.items()},
        "added_median_ms": median["quota"] - median["baseline"],
        "ratio_median": median["quota"] / median["baseline"],
        "aws_calls_per_request": per,
        "added_aws_calls_per_request": per["quota"] - per["baseline"],
        "aws_operations": {name: sorted(set(seen)) for name, seen in calls.items()},
    }


async def measure_submit(
    settings: Settings, token: str, requests: int, batch: int
) -> dict[str, Any]:
    quota = create_app(
        settings.model_copy(
            update={"max_in_flight_per_tenant": 10**9, "overload_queue_depth": 10**9}
        )
    )
    baseline = create_app(
        settings.model_copy(update={"max_in_flight_per_tenant": 0, "overload_queue_depth": 0})
    )
    fixed = Principal(key_id="0" * 16, tenant="bench", scopes=ALL_SCOPES)
    baseline.dependency_overrides[authenticate] = lambda: fixed
    calls: dict[str, list[str]] = {"quota": [], "baseline": []}
    async with quota.router.lifespan_context(quota), baseline.router.lifespan_context(baseline):
        _count_calls(quota, calls["quota"])
        _count_calls(baseline, calls["baseline"])
        clients = {
            "quota": httpx.AsyncClient(
                transport=httpx.ASGITransport(app=quota),
                base_url="http://q",
                headers={"Authorization": f"Bearer {token}"},
            ),
            "baseline": httpx.AsyncClient(
                transport=httpx.ASGITransport(app=baseline), base_url="http://b"
            ),
        }
        results = await _alternate(clients, _submit_batch, calls, requests, batch)
    return _summary(results, calls)


async def measure(requests: int, batch: int) -> dict[str, Any]:
    settings = Settings(
        bucket="bench-auth", table="bench-auth", request_queue="bench-auth-req",
        render_queue="bench-auth-ren", rate_limit_per_minute=60_000, rate_limit_burst=100_000,
    )  # fmt: skip
    await bootstrap(settings, seed=False)
    async with AwsClients.open(settings) as aws:
        key = await KeyStore(aws.dynamodb, settings.table).create("bench", "b", ALL_SCOPES)
    with_auth = create_app(settings)
    baseline = create_app(settings)
    fixed = Principal(key_id="0" * 16, tenant="bench", scopes=ALL_SCOPES)
    baseline.dependency_overrides[authenticate] = lambda: fixed
    calls: dict[str, list[str]] = {"auth": [], "baseline": []}
    async with (
        with_auth.router.lifespan_context(with_auth),
        baseline.router.lifespan_context(baseline),
    ):
        for name, app in (("auth", with_auth), ("baseline", baseline)):
            count_calls(app.state.store._ddb, calls[name])  # the api's one DynamoDB client
        headers = {"Authorization": f"Bearer {key.token}"}
        clients = {
            "auth": httpx.AsyncClient(
                transport=httpx.ASGITransport(app=with_auth), base_url="http://a", headers=headers
            ),
            "baseline": httpx.AsyncClient(
                transport=httpx.ASGITransport(app=baseline), base_url="http://b"
            ),
        }
        results = await _alternate(clients, _time_batch, calls, requests, batch)
    submit = await measure_submit(settings, key.token, requests, batch)
    per = {name: len(seen) / len(results[name]) for name, seen in calls.items()}
    kinds = {name: sorted(set(seen)) for name, seen in calls.items()}
    median = {name: statistics.median(times) for name, times in results.items()}
    p95 = {name: statistics.quantiles(times, n=20)[-1] for name, times in results.items()}
    return {
        "requests": len(results["auth"]),
        "median_ms": median,
        "p95_ms": p95,
        "added_median_ms": median["auth"] - median["baseline"],
        "ratio_median": median["auth"] / median["baseline"],
        "dynamodb_calls_per_request": per,
        "added_dynamodb_calls_per_request": per["auth"] - per["baseline"],
        "dynamodb_operations": kinds,
        "submit": submit,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=BACKENDS, default="moto")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--batch", type=int, default=25)
    args = parser.parse_args()
    emulator = start_emulator(args.backend, workdir=Path(tempfile.mkdtemp(prefix="bench-auth-")))
    os.environ.update(emulator.child_env())
    try:
        report = asyncio.run(measure(args.requests, args.batch))
    finally:
        emulator.stop()
    report["backend"] = args.backend
    print(f"GET /memes/<id> (404), {report['requests']} requests each, {args.backend}")
    print(f"{'':12} {'median ms':>10} {'p95 ms':>8} {'DynamoDB calls/req':>20}")
    for name in ("baseline", "auth"):
        print(
            f"{name:12} {report['median_ms'][name]:10.2f} {report['p95_ms'][name]:8.2f}"
            f" {report['dynamodb_calls_per_request'][name]:20.2f}"
        )
    added, ratio = report["added_median_ms"], report["ratio_median"]
    calls = report["added_dynamodb_calls_per_request"]
    print(f"auth + quota add {added:.2f} ms (median, x{ratio:.2f}) and {calls:.2f} DynamoDB calls")
    submit = report["submit"]
    print(f"\nPOST /memes (202), {submit['requests']} requests each")
    print(f"{'':12} {'median ms':>10} {'p95 ms':>8} {'AWS calls/req':>14}")
    for name in ("baseline", "quota"):
        print(
            f"{name:12} {submit['median_ms'][name]:10.2f} {submit['p95_ms'][name]:8.2f}"
            f" {submit['aws_calls_per_request'][name]:14.2f}"
        )
    print(
        f"auth + rate limit + in-flight cap + back-pressure add {submit['added_median_ms']:.2f}"
        f" ms (median, x{submit['ratio_median']:.2f}) and"
        f" {submit['added_aws_calls_per_request']:.2f} AWS calls"
    )
    print(json.dumps(report, sort_keys=True))


if __name__ == "__main__":
    main()

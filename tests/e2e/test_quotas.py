"""Quotas are cluster-wide: two api processes share one key's budget through DynamoDB; and
back-pressure refuses new memes while the pipeline's backlog is past its threshold."""

from __future__ import annotations

import asyncio
import math
import time

import httpx
import pytest

from devenv.run.stack import Stack, create_key
from tests.support.memes import wait_until_settled
from tests.support.stack import start_api

pytestmark = pytest.mark.e2e

PER_MINUTE = 6  # one request refilled every 10 s: a burst test sees at most a refill or two
BURST = 10


async def test_a_burst_over_two_api_processes_admits_about_the_limit(stack: Stack) -> None:
    settings = {
        "MEMEFORGE_RATE_LIMIT_PER_MINUTE": str(PER_MINUTE),
        "MEMEFORGE_RATE_LIMIT_BURST": str(BURST),
    }
    urls = [await asyncio.to_thread(start_api, stack, f"api-q{i}", settings) for i in (1, 2)]
    try:
        token = await asyncio.to_thread(create_key, stack.env)
        async with httpx.AsyncClient(
            headers={"Authorization": f"Bearer {token}"}, timeout=30
        ) as client:
            started = time.monotonic()
            responses = await asyncio.gather(
                *(
                    client.get(f"{urls[i % 2]}/templates", params={"limit": 1})
                    for i in range(2 * BURST)
                )
            )
            elapsed_s = time.monotonic() - started
        statuses = [r.status_code for r in responses]
        admitted = statuses.count(200)
        # Tolerance: the burst, plus what refilled while the burst ran (one per 10 s).
        refilled = math.floor(elapsed_s * PER_MINUTE / 60) + 1
        assert BURST <= admitted <= BURST + refilled, statuses
        assert statuses.count(429) == 2 * BURST - admitted
        for refused in (r for r in responses if r.status_code == 429):
            assert refused.headers["content-type"] == "application/problem+json"
            assert refused.json()["code"] == "rate-limited"
            assert int(refused.headers["retry-after"]) >= 1
            assert refused.headers["ratelimit-policy"] == f'"per-key";q={BURST};w=100'
            assert refused.headers["ratelimit"].startswith('"per-key";r=0;')
        ok = next(r for r in responses if r.status_code == 200)
        assert ok.headers["ratelimit-policy"] == f'"per-key";q={BURST};w=100'
    finally:
        for name in ("api-q1", "api-q2"):
            if name in stack.services:
                await asyncio.to_thread(stack.stop_service, name)


OVERLOAD_DEPTH = 3
POLL_S = 0.5
POLLS = 120  # bounded: a minute at most per phase


async def _post_until(client: httpx.AsyncClient, url: str, status: int) -> httpx.Response:
    """POST a meme every POLL_S until the answer is ``status`` (bounded by POLLS)."""
    for _ in range(POLLS):
        response = await client.post(f"{url}/memes", json={"template_id": "night-sky", "top": "hi"})
        if response.status_code == status:
            return response
        assert response.status_code in (202, 503), response.text
        await asyncio.sleep(POLL_S)
    raise AssertionError(f"POST /memes never answered {status}")


async def test_a_backlog_past_the_threshold_is_503_overloaded_until_it_drains(stack: Stack) -> None:
    """README "Back-pressure": the renderer stopped, the render queue fills past the
    threshold, POST /memes → 503 overloaded with Retry-After; the renderer back, it drains
    and POST /memes is accepted again."""
    settings = {
        "MEMEFORGE_OVERLOAD_QUEUE_DEPTH": str(OVERLOAD_DEPTH),
        "MEMEFORGE_QUEUE_DEPTH_REFRESH_S": "1",
    }
    url = await asyncio.to_thread(start_api, stack, "api-overload", settings)
    await asyncio.to_thread(stack.stop_service, "renderer")
    try:
        async with httpx.AsyncClient(headers=stack.auth_headers, timeout=30) as client:
            refused = await _post_until(client, url, 503)
            assert refused.headers["content-type"] == "application/problem+json"
            assert refused.json()["code"] == "overloaded"
            assert refused.headers["retry-after"] == "1"
            await asyncio.to_thread(stack.start_service, "renderer")
            accepted = await _post_until(client, url, 202)
            assert accepted.json()["state"] == "PENDING"
    finally:
        if "renderer" not in stack.services:
            await asyncio.to_thread(stack.start_service, "renderer")
        await asyncio.to_thread(stack.stop_service, "api-overload")


IN_FLIGHT_CAP = 4


async def _burst(client: httpx.AsyncClient, urls: list[str], n: int) -> list[httpx.Response]:
    body = {"template_id": "night-sky", "top": "in flight"}
    return await asyncio.gather(*(client.post(f"{urls[i % 2]}/memes", json=body) for i in range(n)))


async def test_the_in_flight_cap_is_shared_by_two_api_processes_and_freed_once_per_meme(
    stack: Stack,
) -> None:
    """README "In-flight cap": with the renderer stopped, a burst of twice the cap over two
    api processes admits exactly the cap, the rest 429 too-many-in-flight with
    Retry-After; once those memes are DONE their slots are free (each exactly once: the
    next burst admits exactly the cap again)."""
    settings = {"MEMEFORGE_MAX_IN_FLIGHT_PER_TENANT": str(IN_FLIGHT_CAP)}
    names = ("api-cap1", "api-cap2")
    urls = [await asyncio.to_thread(start_api, stack, name, settings) for name in names]
    token = await asyncio.to_thread(create_key, stack.env, "capped")
    await asyncio.to_thread(stack.stop_service, "renderer")
    try:
        async with httpx.AsyncClient(
            headers={"Authorization": f"Bearer {token}"}, timeout=30
        ) as client:
            for round_ in range(2):
                responses = await _burst(client, urls, 2 * IN_FLIGHT_CAP)
                statuses = [r.status_code for r in responses]
                assert statuses.count(202) == IN_FLIGHT_CAP, (round_, statuses)
                assert statuses.count(429) == IN_FLIGHT_CAP, (round_, statuses)
                for refused in (r for r in responses if r.status_code == 429):
                    assert refused.headers["content-type"] == "application/problem+json"
                    assert refused.json()["code"] == "too-many-in-flight"
                    assert int(refused.headers["retry-after"]) >= 1
                await asyncio.to_thread(stack.start_service, "renderer")
                admitted = [r.json()["id"] for r in responses if r.status_code == 202]
                async with httpx.AsyncClient(
                    base_url=urls[0], headers=client.headers, timeout=30
                ) as api:
                    settled = [await wait_until_settled(api, meme_id) for meme_id in admitted]
                assert {m["state"] for m in settled} == {"DONE"}
                if round_ == 0:
                    await asyncio.to_thread(stack.stop_service, "renderer")
    finally:
        if "renderer" not in stack.services:
            await asyncio.to_thread(stack.start_service, "renderer")
        for name in names:
            await asyncio.to_thread(stack.stop_service, name)

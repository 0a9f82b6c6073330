"""Many waiters over two api processes while the real pipeline renders their memes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import httpx
import pytest

from devenv.run.proc import free_port
from devenv.run.stack import UNLIMITED_RATE, Stack
from tests.support.memes import wait_until_settled
from tests.support.stack import start_api

pytestmark = pytest.mark.e2e

MEMES = 40
WAITERS_PER_MEME = 5  # 200 in all, spread over both processes and both kinds


@pytest.fixture(scope="module")
def two_apis(stack: Stack) -> Iterator[list[tuple[str, str]]]:
    """(api url, metrics url) of two api processes of their own beside the shared stack's,
    stopped after the module."""
    names = ("api-waiting-a", "api-waiting-b")
    try:
        apis = []
        for name in names:
            metrics_port = free_port()
            # 200 waiters on one key are a load generator: past a client's rate limit on purpose.
            settings = UNLIMITED_RATE | {"MEMEFORGE_METRICS_PORT": str(metrics_port)}
            apis.append((start_api(stack, name, settings), f"http://127.0.0.1:{metrics_port}"))
        yield apis
    finally:
        for name in names:
            if name in stack.services:
                stack.stop_service(name)


async def long_poll_until_settled(api: httpx.AsyncClient, meme_id: str) -> str:
    state: str = (await wait_until_settled(api, meme_id))["state"]
    return state


async def stream_until_settled(api: httpx.AsyncClient, meme_id: str) -> str:
    states: list[str] = []
    async with api.stream("GET", f"/memes/{meme_id}/events", params={"timeout": 300}) as stream:
        async for line in stream.aiter_lines():
            if line.startswith("data: "):
                states.append(json.loads(line.removeprefix("data: "))["state"])
    return states[-1]


async def watcher_sizes(metrics_url: str) -> tuple[float, float]:
    async with httpx.AsyncClient() as client:
        lines = (await client.get(f"{metrics_url}/metrics")).text.splitlines()
    samples = [line.split() for line in lines if line and not line.startswith("#")]
    values = {name: float(value) for name, value, *_ in samples}
    return values["memeforge_waiters"], values["memeforge_watched_memes"]


async def test_two_hundred_waiters_across_two_api_processes_all_see_done(
    stack: Stack, two_apis: list[tuple[str, str]]
) -> None:
    """README "all woken by one watcher per process", two api processes."""
    auth, apis = stack.auth_headers, two_apis
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=50)
    clients = [
        httpx.AsyncClient(base_url=url, headers=auth, timeout=60, limits=limits) for url, _ in apis
    ]
    try:
        seed = (await clients[0].get("/templates", params={"limit": 1})).json()["items"][0]
        created = await asyncio.gather(
            *(
                clients[n % 2].post("/memes", json={"template_id": seed["id"], "top": f"w{n}"})
                for n in range(MEMES)
            )
        )
        ids = [response.json()["id"] for response in created]
        waiters = []
        for n in range(MEMES * WAITERS_PER_MEME):
            api, meme_id = clients[n % 2], ids[n % MEMES]
            wait = long_poll_until_settled if (n // 2) % 2 == 0 else stream_until_settled
            waiters.append(wait(api, meme_id))
        states = await asyncio.gather(*waiters)
        assert states == ["DONE"] * len(waiters)

        # Every subscription is gone once its request ended, on both processes.
        for _, metrics_url in apis:
            for _ in range(100):
                if await watcher_sizes(metrics_url) == (0.0, 0.0):
                    break
                await asyncio.sleep(0.1)
            assert await watcher_sizes(metrics_url) == (0.0, 0.0)
    finally:
        for client in clients:
            await client.aclose()

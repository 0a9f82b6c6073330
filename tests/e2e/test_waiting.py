"""Many waiters over two api processes while the real pipeline renders their memes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devenv.run.proc import free_port, http_ok, wait_until
from devenv.run.stack import Stack
from tests.support.stack import running_stack

pytestmark = pytest.mark.e2e

MEMES = 40
WAITERS_PER_MEME = 5  # 200 in all, spread over both processes and both kinds


@pytest.fixture(scope="module")
def two_apis(
    tmp_path_factory: pytest.TempPathFactory, e2e_backend: str
) -> Iterator[list[tuple[str, str]]]:
    """Two api processes of their own beside the stack's, each with its metrics port."""
    workdir: Path = tmp_path_factory.mktemp(f"waiting-{e2e_backend}")
    with running_stack(workdir, backend=e2e_backend) as stack:
        yield [start_api(stack, "api-a"), start_api(stack, "api-b")]


def start_api(stack: Stack, name: str) -> tuple[str, str]:
    """(api url, metrics url) of a new api process."""
    port, metrics_port = free_port(), free_port()
    stack.service_env[name] = stack.env | {
        "MEMEFORGE_API_PORT": str(port),
        "MEMEFORGE_METRICS_PORT": str(metrics_port),
    }
    proc = stack.start_service(name)
    url = f"http://127.0.0.1:{port}"
    wait_until(http_ok(f"{url}/healthz"), timeout=60, what=name, proc=proc)
    return url, f"http://127.0.0.1:{metrics_port}"


async def long_poll_until_settled(api: httpx.AsyncClient, meme_id: str) -> str:
    for _ in range(30):
        state: str = (await api.get(f"/memes/{meme_id}", params={"wait": 10})).json()["state"]
        if state in ("DONE", "FAILED"):
            return state
    raise AssertionError(f"meme {meme_id} never settled")


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
    two_apis: list[tuple[str, str]],
) -> None:
    """README "all woken by one watcher per process", two api processes."""
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=50)
    clients = [httpx.AsyncClient(base_url=url, timeout=60, limits=limits) for url, _ in two_apis]
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
        for _, metrics_url in two_apis:
            for _ in range(100):
                if await watcher_sizes(metrics_url) == (0.0, 0.0):
                    break
                await asyncio.sleep(0.1)
            assert await watcher_sizes(metrics_url) == (0.0, 0.0)
    finally:
        for client in clients:
            await client.aclose()

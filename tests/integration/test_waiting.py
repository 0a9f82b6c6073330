"""Waiting through a real api process (uvicorn, so streams and disconnects are real) on
the emulator; nothing renders here, so memes stay where the test puts them."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from memeforge_common.apikeys import ALL_SCOPES, KeyStore
from memeforge_common.aws import AwsClients
from memeforge_common.items import MemeStore, new_item
from memeforge_common.models import MemeState, MemeStatus, RenderSpec, classic_boxes, utcnow
from memeforge_common.settings import Settings

from devenv.run.emulator import Emulator
from devenv.run.proc import free_port, http_ok, spawn, stop, wait_until

pytestmark = pytest.mark.integration

MAX_WAITERS = 20
TENANT = "acme"


@pytest.fixture
def metrics_port() -> int:
    return free_port()


@pytest.fixture
def api_url(
    emulator: Emulator, resources: Settings, tmp_path: Path, metrics_port: int
) -> Iterator[str]:
    port = free_port()
    env = emulator.child_env(
        {
            "MEMEFORGE_BUCKET": resources.bucket,
            "MEMEFORGE_TABLE": resources.table,
            "MEMEFORGE_REQUEST_QUEUE": resources.request_queue,
            "MEMEFORGE_RENDER_QUEUE": resources.render_queue,
            "MEMEFORGE_API_PORT": str(port),
            "MEMEFORGE_MAX_WAITERS": str(MAX_WAITERS),
            "MEMEFORGE_METRICS_PORT": str(metrics_port),
        }
    )
    log = tmp_path / "api.log"
    proc = spawn([sys.executable, "-m", "memeforge_api"], env=env, log_path=str(log))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(http_ok(f"{url}/healthz"), timeout=60, what="api", proc=proc)
        yield url
    finally:
        stop(proc, grace=10)
        print(log.read_text()[-3000:])


async def bearer(aws: AwsClients, settings: Settings, tenant: str) -> dict[str, str]:
    key = await KeyStore(aws.dynamodb, settings.table).create(tenant, "waiting", ALL_SCOPES)
    return {"Authorization": f"Bearer {key.token}"}


@pytest.fixture
async def auth(aws: AwsClients, resources: Settings) -> dict[str, str]:
    return await bearer(aws, resources, TENANT)


@pytest.fixture
async def http(api_url: str, auth: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api_url, headers=auth, timeout=30) as client:
        yield client


@pytest.fixture
async def metrics(metrics_port: int) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{metrics_port}") as client:
        yield client


async def gauge(metrics: httpx.AsyncClient, name: str) -> float:
    text = (await metrics.get("/metrics")).text
    line = next(line for line in text.splitlines() if line.startswith(f"{name} "))
    return float(line.split()[1])


async def until_gauges(metrics: httpx.AsyncClient, waiters: float, watched: float) -> None:
    """Bounded wait for the watcher's sizes (a gauge is set as a request unwinds)."""
    for _ in range(200):
        now = (
            await gauge(metrics, "memeforge_waiters"),
            await gauge(metrics, "memeforge_watched_memes"),
        )
        if now == (waiters, watched):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"watcher sizes {now}, wanted {(waiters, watched)}")


async def make_memes(aws: AwsClients, settings: Settings, n: int) -> list[str]:
    store = MemeStore(aws.dynamodb, settings.table)
    items = [
        new_item(f"{i:032x}", "any", RenderSpec(boxes=classic_boxes("a", "")), tenant=TENANT)
        for i in range(n)
    ]
    await asyncio.gather(*(store.create(item) for item in items))
    return [item.id for item in items]


async def test_batch_reads_take_many_ids_and_project_few_fields(
    aws: AwsClients, resources: Settings
) -> None:
    """docs/waiting.md "One set, one read": BatchGetItem, stamps, then statuses."""
    ids = await make_memes(aws, resources, 250)
    store = MemeStore(aws.dynamodb, resources.table)
    await store.transition(ids[7], MemeState.QUEUED)
    statuses, calls = await store.statuses([*ids, "f" * 32])
    assert calls == 3  # 100 + 100 + 51 keys
    assert sorted(statuses) == sorted(ids)  # the unknown id is simply absent
    assert statuses[ids[7]].state is MemeState.QUEUED
    item = await store.get(ids[8])
    assert item is not None
    assert statuses[ids[8]].model_dump() == item.model_dump(include=set(MemeStatus.model_fields))
    assert not hasattr(statuses[ids[8]], "spec")
    stamps, calls = await store.stamps([*ids, "f" * 32])
    assert calls == 3
    assert stamps == {i: status.updated_at for i, status in statuses.items()}


async def test_the_change_feed_lists_the_latest_status_of_what_changed_since(
    aws: AwsClients, resources: Settings
) -> None:
    """docs/waiting.md "The change feed": one Query of the changes index answers for
    every watched id with the status a consistent read gives, and only for what moved."""
    ids = await make_memes(aws, resources, 5)
    store = MemeStore(aws.dynamodb, resources.table)
    since = utcnow()
    await asyncio.sleep(0.01)  # the stamps below are after ``since``, to the millisecond
    await store.transition(ids[1], MemeState.QUEUED)
    await store.transition(ids[2], MemeState.QUEUED)
    await store.transition(ids[2], MemeState.RENDERING)
    await store.transition(ids[3], MemeState.FAILED)
    wanted = {ids[0], ids[1], ids[2]}  # ids[3] moved but nobody here waits on it
    changed, calls = await store.changes(since, utcnow(), wanted)
    assert sorted(changed) == sorted([ids[1], ids[2]])
    assert calls in (1, 2)  # one per minute bucket the window touches
    assert changed[ids[2]].state is MemeState.RENDERING
    consistent, _ = await store.statuses([ids[1], ids[2]])
    assert changed == consistent
    later, _ = await store.changes(utcnow(), utcnow(), wanted)
    assert later == {}


async def test_a_long_poll_and_a_stream_are_woken_by_a_change(
    http: httpx.AsyncClient, metrics: httpx.AsyncClient, aws: AwsClients, resources: Settings
) -> None:
    """README "?wait=N long-polls up to N seconds for the state to change"."""
    (meme_id,) = await make_memes(aws, resources, 1)
    poll = asyncio.ensure_future(http.get(f"/memes/{meme_id}", params={"wait": 20}))
    events: list[str] = []

    async def stream() -> None:
        async with http.stream("GET", f"/memes/{meme_id}/events") as response:
            async for line in response.aiter_lines():
                if line.startswith("id: "):
                    events.append(line.removeprefix("id: "))

    streaming = asyncio.ensure_future(stream())
    await until_gauges(metrics, waiters=2, watched=1)
    store = MemeStore(aws.dynamodb, resources.table)
    await store.transition(meme_id, MemeState.QUEUED)
    assert (await poll).json()["state"] == "QUEUED"
    await store.transition(meme_id, MemeState.FAILED)
    await streaming
    assert events[0] == "PENDING"
    assert events[-1] == "FAILED"
    await until_gauges(metrics, waiters=0, watched=0)


async def test_disconnecting_clients_are_unsubscribed_and_the_bound_answers_503(
    api_url: str,
    auth: dict[str, str],
    http: httpx.AsyncClient,
    metrics: httpx.AsyncClient,
    aws: AwsClients,
    resources: Settings,
) -> None:
    """docs/waiting.md "Disconnects" and "Bounds"."""
    ids = await make_memes(aws, resources, MAX_WAITERS // 2)

    async def stream(client: httpx.AsyncClient, meme_id: str) -> None:
        async with client.stream("GET", f"/memes/{meme_id}/events") as response:
            async for _ in response.aiter_lines():
                pass

    async with httpx.AsyncClient(base_url=api_url, headers=auth, timeout=30) as clients:
        waiting: list[asyncio.Future[object]] = [
            asyncio.ensure_future(clients.get(f"/memes/{i}?wait=20")) for i in ids
        ]
        waiting += [asyncio.ensure_future(stream(clients, i)) for i in ids]
        await until_gauges(metrics, waiters=MAX_WAITERS, watched=len(ids))

        refused = await http.get(f"/memes/{ids[0]}", params={"wait": 5})
        assert refused.status_code == 503
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["code"] == "too-many-waiters"
        assert int(refused.headers["retry-after"]) > 0
        refused_stream = await http.get(f"/memes/{ids[0]}/events")
        assert refused_stream.status_code == 503
        assert (await http.get(f"/memes/{ids[0]}")).status_code == 200  # plain reads still work

        for task in waiting:
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
    # The connections are closed: every subscription goes, long before any wait ends.
    await until_gauges(metrics, waiters=0, watched=0)


async def test_another_tenant_cannot_wait_on_a_meme_the_watcher_is_reading(
    api_url: str,
    http: httpx.AsyncClient,
    metrics: httpx.AsyncClient,
    aws: AwsClients,
    resources: Settings,
) -> None:
    """The watcher's fresh status of a meme (what a new waiter starts from) is checked
    for its tenant like an item read: another tenant gets 404 on long-poll and SSE."""
    (meme_id,) = await make_memes(aws, resources, 1)
    own = asyncio.ensure_future(http.get(f"/memes/{meme_id}", params={"wait": 20}))
    await until_gauges(metrics, waiters=1, watched=1)
    other = await bearer(aws, resources, "other")
    async with httpx.AsyncClient(base_url=api_url, headers=other, timeout=30) as intruder:
        for path, params in ((f"/memes/{meme_id}", {"wait": 1}), (f"/memes/{meme_id}/events", {})):
            response = await intruder.get(path, params=params)
            assert (response.status_code, response.json()["code"]) == (404, "meme-not-found")
    await until_gauges(metrics, waiters=1, watched=1)  # the intruder never subscribed
    await MemeStore(aws.dynamodb, resources.table).transition(meme_id, MemeState.QUEUED)
    assert (await own).json()["state"] == "QUEUED"

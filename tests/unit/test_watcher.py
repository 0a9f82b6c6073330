"""The watcher and the waiting flows over an in-memory store whose reads the test releases
one at a time, so "between two ticks" is a fact of the test, not a matter of timing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from typing import Any, cast

import pytest
from memeforge_api.problems import Problem
from memeforge_api.waiting import current, event_stream, long_poll
from memeforge_api.watcher import TooManyWaiters, Watcher
from memeforge_common.items import MemeStore
from memeforge_common.models import MemeState, MemeStatus, utcnow
from starlette.types import Message

pytestmark = pytest.mark.unit


class GatedStore:
    """Holds one status per id; each batch read waits for the test to allow it."""

    def __init__(self) -> None:
        self.items: dict[str, MemeStatus] = {}
        self.reads: list[list[str]] = []
        self.gets = 0
        self.full_reads: list[list[str]] = []
        self._allowed = asyncio.Semaphore(0)

    def put(self, meme_id: str, state: MemeState) -> MemeStatus:
        old = self.items.get(meme_id)
        now = utcnow() if old is None else old.updated_at + timedelta(milliseconds=1)
        times = dict(old.state_times) if old else {}
        times[state] = now
        status = MemeStatus(
            id=meme_id,
            state=state,
            template_id="t",
            created_at=old.created_at if old else now,
            updated_at=now,
            state_times=times,
        )
        self.items[meme_id] = status
        return status

    def allow_read(self) -> None:
        self._allowed.release()

    async def stamps(self, meme_ids: Sequence[str]) -> tuple[dict[str, datetime], int]:
        await self._allowed.acquire()
        self.reads.append(list(meme_ids))
        return {i: self.items[i].updated_at for i in meme_ids if i in self.items}, 1

    async def statuses(self, meme_ids: Sequence[str]) -> tuple[dict[str, MemeStatus], int]:
        self.full_reads.append(list(meme_ids))
        return {i: self.items[i] for i in meme_ids if i in self.items}, 1

    async def get(self, meme_id: str) -> MemeStatus | None:
        self.gets += 1
        return self.items.get(meme_id)


class Client:
    """An ASGI receive channel: the request, then a disconnect when the test says so."""

    def __init__(self) -> None:
        self._messages: asyncio.Queue[Message] = asyncio.Queue()
        self._messages.put_nowait({"type": "http.request", "body": b"", "more_body": False})

    def disconnect(self) -> None:
        self._messages.put_nowait({"type": "http.disconnect"})

    async def receive(self) -> Message:
        return await self._messages.get()


def mid(n: int) -> str:
    return f"{n:032x}"


@pytest.fixture
async def store() -> GatedStore:
    return GatedStore()


@pytest.fixture
async def watcher(store: GatedStore) -> AsyncIterator[Watcher]:
    watcher = Watcher(
        cast(MemeStore, store), max_waiters=3, max_calls_per_s=1000, fast_tick_s=0.001
    )
    task = asyncio.create_task(watcher.run())
    yield watcher
    task.cancel()


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def one_tick(store: GatedStore) -> None:
    """Let the watcher make one more read, and wait (bounded) until it has."""
    reads = len(store.reads)
    store.allow_read()
    for _ in range(1000):
        if len(store.reads) > reads:
            break
        await asyncio.sleep(0.001)
    await settle()


def parse(event: str) -> dict[str, Any]:
    data = next(line for line in event.splitlines() if line.startswith("data: "))
    return cast(dict[str, Any], json.loads(data.removeprefix("data: ")))


async def test_two_changes_within_one_tick_end_in_one_event_with_the_history(
    store: GatedStore, watcher: Watcher
) -> None:
    """docs/waiting.md "Two changes within one tick"."""
    first = store.put(mid(1), MemeState.QUEUED)
    stream = event_stream(watcher, cast(MemeStore, store), first, 60, Client().receive)
    assert parse(await anext(stream))["state"] == "QUEUED"
    next_event = asyncio.ensure_future(anext(stream))
    store.put(mid(1), MemeState.RENDERING)
    store.put(mid(1), MemeState.DONE)
    store.allow_read()
    done = parse(await next_event)
    assert done["state"] == "DONE"
    assert set(done["state_times"]) == {"QUEUED", "RENDERING", "DONE"}
    with pytest.raises(StopAsyncIteration):
        await anext(stream)
    assert watcher.watched == 0


async def test_one_read_serves_every_waiter_and_wakes_only_the_moved(
    store: GatedStore, watcher: Watcher
) -> None:
    """README "all woken by one watcher per process"; waiting.md "One set, one read"."""
    firsts = [store.put(mid(n), MemeState.QUEUED) for n in range(3)]
    polls = [
        asyncio.ensure_future(long_poll(watcher, cast(MemeStore, store), f, 60, Client().receive))
        for f in firsts
    ]
    await settle()
    assert (watcher.watched, watcher.waiters) == (3, 3)
    store.put(mid(1), MemeState.RENDERING)
    store.allow_read()
    moved = await polls[1]
    assert moved.state is MemeState.RENDERING
    assert sorted(store.reads[0]) == [mid(0), mid(1), mid(2)]
    assert store.full_reads == [[mid(1)]]  # only what moved is read in full
    assert not polls[0].done()
    assert not polls[2].done()
    for poll in (polls[0], polls[2]):
        poll.cancel()
    await settle()
    assert watcher.watched == 0


async def test_disconnecting_clients_are_unsubscribed_at_once(
    store: GatedStore, watcher: Watcher
) -> None:
    """docs/waiting.md "Disconnects": a waiter "unsubscribes at once"."""
    first = store.put(mid(7), MemeState.PENDING)
    poller, streamer = Client(), Client()
    poll = asyncio.ensure_future(
        long_poll(watcher, cast(MemeStore, store), first, 60, poller.receive)
    )
    stream = event_stream(watcher, cast(MemeStore, store), first, 60, streamer.receive)
    await anext(stream)
    await settle()
    assert (watcher.watched, watcher.waiters) == (1, 2)

    poller.disconnect()
    await settle()
    assert watcher.waiters == 1
    assert (await poll).state is MemeState.PENDING  # no read needed to let it go

    streamer.disconnect()  # an SSE client gone between events: no read, no beat needed
    await settle()
    assert (watcher.watched, watcher.waiters) == (0, 0)
    with pytest.raises(StopAsyncIteration):
        await anext(stream)
    assert store.reads == []


async def test_past_the_bound_subscribing_is_refused_with_retry_after(
    store: GatedStore, watcher: Watcher
) -> None:
    """docs/waiting.md "Bounds": 503 too-many-waiters with Retry-After."""
    first = store.put(mid(9), MemeState.QUEUED)
    held = [watcher.subscribe(first) for _ in range(3)]
    with pytest.raises(TooManyWaiters):
        watcher.subscribe(first)
    with pytest.raises(Problem) as refused:
        await long_poll(watcher, cast(MemeStore, store), first, 1, Client().receive)
    assert (refused.value.status, refused.value.code) == (503, "too-many-waiters")
    assert int(refused.value.headers["Retry-After"]) > 0
    for sub in held:
        watcher.unsubscribe(sub)
    assert watcher.waiters == 0


async def test_a_waiter_reads_the_truth_on_its_deadline(store: GatedStore) -> None:
    """docs/waiting.md "Truth on the deadline".
    No watcher tick ever runs (no read is allowed): the deadline read still answers."""
    watcher = Watcher(cast(MemeStore, store), max_waiters=3, max_calls_per_s=1000)
    first = store.put(mid(3), MemeState.RENDERING)
    store.put(mid(3), MemeState.DONE)
    seen = await long_poll(watcher, cast(MemeStore, store), first, 0.01, Client().receive)
    assert seen.state is MemeState.DONE
    assert watcher.waiters == 0


async def test_a_long_poll_asked_again_starts_from_the_watchers_read(
    store: GatedStore, watcher: Watcher
) -> None:
    """docs/waiting.md "a long-poll asked again" starts from the watcher's status."""
    first = store.put(mid(4), MemeState.QUEUED)
    poll = asyncio.ensure_future(
        long_poll(watcher, cast(MemeStore, store), first, 60, Client().receive)
    )
    await settle()
    store.put(mid(4), MemeState.RENDERING)
    store.allow_read()
    assert (await poll).state is MemeState.RENDERING
    again = await current(watcher, cast(MemeStore, store), mid(4))
    assert again is not None
    assert again.state is MemeState.RENDERING
    assert store.gets == 0


async def test_a_deleted_meme_is_not_served_from_the_watchers_read(
    store: GatedStore, watcher: Watcher
) -> None:
    """Found by schemathesis (stateful): DELETE /memes/{id}, then its event stream started
    from the status a tick had read before the deletion. Deleted through this process:
    forget(); through another replica: the next tick finds it gone."""
    first = store.put(mid(5), MemeState.QUEUED)
    poll = asyncio.ensure_future(
        long_poll(watcher, cast(MemeStore, store), first, 60, Client().receive)
    )
    await settle()
    store.put(mid(5), MemeState.RENDERING)
    store.allow_read()
    assert (await poll).state is MemeState.RENDERING
    assert watcher.recent(mid(5)) is not None
    del store.items[mid(5)]
    watcher.forget(mid(5))
    assert await current(watcher, cast(MemeStore, store), mid(5)) is None

    sub = watcher.subscribe(store.put(mid(6), MemeState.QUEUED))
    store.put(mid(6), MemeState.RENDERING)
    await one_tick(store)
    assert watcher.recent(mid(6)) is not None
    del store.items[mid(6)]
    await one_tick(store)
    assert watcher.recent(mid(6)) is None
    assert await current(watcher, cast(MemeStore, store), mid(6)) is None
    watcher.unsubscribe(sub)

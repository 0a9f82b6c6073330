"""The watcher and the waiting flows over an in-memory store whose reads the test releases
one at a time, so "between two ticks" is a fact of the test, not a matter of timing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Container, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from memeforge_api.problems import Problem
from memeforge_api.waiting import DEADLINE_SPREAD, current, event_stream, long_poll, spread
from memeforge_api.watcher import TooManyWaiters, Watcher
from memeforge_common.items import MemeStore, feed_bucket, feed_buckets
from memeforge_common.models import MemeState, MemeStatus, utcnow
from starlette.types import Message

pytestmark = pytest.mark.unit


class GatedStore:
    """Holds one status per id; each change-feed query and each batched read waits for
    the test to allow it. ``lagging`` ids are missing from the feed, as a change can be
    from an eventually consistent index for a while."""

    def __init__(self) -> None:
        self.items: dict[str, MemeStatus] = {}
        self.feeds: list[list[str]] = []
        self.reads: list[list[str]] = []
        self.gets = 0
        self.full_reads: list[list[str]] = []
        self.lagging: set[str] = set()
        self.feed_open = False  # True: feed queries answer without waiting for the test
        self.full_gate: asyncio.Event | None = None  # set: full reads wait until it is
        self._feed = asyncio.Semaphore(0)
        self._read = asyncio.Semaphore(0)

    def put(self, meme_id: str, state: MemeState) -> MemeStatus:
        old = self.items.get(meme_id)
        # Stamped now, as a writer does (a stamp from the first put's time fell before
        # the feed's window when a loaded machine paused the test 50 ms in between).
        now = utcnow() if old is None else max(utcnow(), old.updated_at + timedelta(milliseconds=1))
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

    def allow_feed(self) -> None:
        self._feed.release()

    def allow_read(self) -> None:
        self._read.release()

    async def changes(
        self, since: datetime, until: datetime, wanted: Container[str]
    ) -> tuple[dict[str, MemeStatus], int]:
        if not self.feed_open:
            await self._feed.acquire()
        self.feeds.append([i for i in self.items if i in wanted])
        return {
            i: s
            for i, s in self.items.items()
            if i in wanted and i not in self.lagging and s.updated_at >= since
        }, 1

    async def stamps(self, meme_ids: Sequence[str]) -> tuple[dict[str, datetime], int]:
        await self._read.acquire()
        self.reads.append(list(meme_ids))
        return {i: self.items[i].updated_at for i in meme_ids if i in self.items}, 1

    async def statuses(self, meme_ids: Sequence[str]) -> tuple[dict[str, MemeStatus], int]:
        if meme_ids:
            self.full_reads.append(list(meme_ids))
            if self.full_gate is not None:
                await self.full_gate.wait()
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
        cast(MemeStore, store),
        max_waiters=3,
        max_calls_per_s=1000,
        fast_tick_s=0.001,
        read_tick_s=0.001,
        sweep_s=3600,  # no sweep unless a test asks for one
    )
    task = asyncio.create_task(watcher.run())
    yield watcher
    task.cancel()


def polling(
    watcher: Watcher, store: GatedStore, first: MemeStatus, wait_s: float
) -> asyncio.Future[MemeStatus]:
    """A long-poll of one client, running."""
    return asyncio.ensure_future(
        long_poll(watcher, cast(MemeStore, store), first, wait_s, Client().receive)
    )


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def one_tick(store: GatedStore) -> None:
    """Let the watcher make one more read, and wait (bounded) until it has."""
    await _one_more(store.reads, store.allow_read)


async def one_feed_query(store: GatedStore) -> None:
    """Let the watcher make one more change-feed query, and wait (bounded) until it has."""
    await _one_more(store.feeds, store.allow_feed)


async def _one_more(done: list[list[str]], allow: Callable[[], None]) -> None:
    before = len(done)
    allow()
    for _ in range(1000):
        if len(done) > before:
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
    store.allow_feed()
    done = parse(await next_event)
    assert done["state"] == "DONE"
    assert set(done["state_times"]) == {"QUEUED", "RENDERING", "DONE"}
    with pytest.raises(StopAsyncIteration):
        await anext(stream)
    assert watcher.watched == 0


async def test_one_feed_query_serves_every_waiter_and_wakes_only_the_moved(
    store: GatedStore, watcher: Watcher
) -> None:
    """README "all woken by one watcher per process"; waiting.md "The change feed"."""
    firsts = [store.put(mid(n), MemeState.QUEUED) for n in range(3)]
    polls = [polling(watcher, store, f, 60) for f in firsts]
    await settle()
    assert (watcher.watched, watcher.waiters) == (3, 3)
    store.put(mid(1), MemeState.RENDERING)
    store.allow_feed()
    moved = await polls[1]
    assert moved.state is MemeState.RENDERING
    assert store.feeds == [[mid(0), mid(1), mid(2)]]  # one query for every watched id
    assert store.reads == []
    assert not polls[0].done()
    assert not polls[2].done()
    for poll in (polls[0], polls[2]):
        poll.cancel()
    await settle()
    assert watcher.watched == 0


async def test_a_change_the_feed_misses_is_seen_by_the_consistent_sweep(
    store: GatedStore,
) -> None:
    """waiting.md "The sweep": the index may lag; the batched consistent read does not."""
    watcher = Watcher(
        cast(MemeStore, store), max_waiters=3, max_calls_per_s=1000, read_tick_s=0, sweep_s=0
    )
    task = asyncio.create_task(watcher.run())
    try:
        firsts = [store.put(mid(n), MemeState.QUEUED) for n in range(2)]
        polls = [polling(watcher, store, f, 60) for f in firsts]
        await settle()
        store.put(mid(0), MemeState.RENDERING)
        store.lagging.add(mid(0))
        store.allow_read()
        assert (await polls[0]).state is MemeState.RENDERING
        assert sorted(store.reads[0]) == [mid(0), mid(1)]
        assert store.full_reads == [[mid(0)]]  # only what moved is read in full
        assert store.feeds == []  # no feed query answered: the sweep alone saw it
        assert not polls[1].done()
        polls[1].cancel()
    finally:
        task.cancel()


async def test_a_change_that_shows_late_on_the_feed_is_read_by_the_trailing_query(
    store: GatedStore, watcher: Watcher
) -> None:
    """waiting.md "The change feed": the trailing window reads a late index entry."""
    first = store.put(mid(5), MemeState.QUEUED)
    store.feed_open = True
    poll = polling(watcher, store, first, 60)
    await settle()
    store.put(mid(5), MemeState.RENDERING)
    store.lagging.add(mid(5))  # not on the index yet
    await asyncio.sleep(0.3)  # the fast window moves on past its stamp
    assert not poll.done()
    store.lagging.discard(mid(5))  # the index caught up: only a window reaching back sees it
    assert (await poll).state is MemeState.RENDERING
    assert store.reads == []  # the feed found it, not the sweep


async def test_the_fast_windows_news_is_not_held_back_by_the_trailing_query(
    store: GatedStore, watcher: Watcher
) -> None:
    """bench.waiting --trace: a DONE the fast query had read reached its client only when
    the trailing query (made once a second, same tick) returned too. Now it is offered
    first: the client has it while the trailing query is still waiting."""
    first = store.put(mid(8), MemeState.QUEUED)
    poll = polling(watcher, store, first, 60)
    await settle()
    await asyncio.sleep(1.0)  # the tick after the next one is due a trailing query too
    await one_feed_query(store)
    assert not poll.done()
    store.put(mid(8), MemeState.RENDERING)
    await one_feed_query(store)  # the fast query; the trailing one waits for the test
    assert (await asyncio.wait_for(poll, 10)).state is MemeState.RENDERING
    assert len(store.feeds) == 2
    store.allow_feed()
    for _ in range(1000):  # the trailing query did come
        if len(store.feeds) == 3:
            break
        await asyncio.sleep(0.001)
    assert len(store.feeds) == 3


async def test_the_feed_does_not_wait_for_a_batched_read_under_way(
    store: GatedStore, watcher: Watcher
) -> None:
    """bench.waiting --trace: the consistent reads (a sweep of 100 ids is two calls) ran
    in front of the feed, so a DONE written meanwhile waited for them. Now the feed
    goes on while a read is under way: here one held by the test until the end."""
    store.feed_open = True
    deadline_first = store.put(mid(20), MemeState.QUEUED)
    moving_first = store.put(mid(21), MemeState.QUEUED)
    at_deadline = polling(watcher, store, deadline_first, 0.05)
    moving = polling(watcher, store, moving_first, 60)
    await asyncio.sleep(0.2)  # the first one's deadline read is under way, held
    assert not at_deadline.done()
    store.put(mid(21), MemeState.DONE)
    assert (await asyncio.wait_for(moving, 5)).state is MemeState.DONE
    assert not at_deadline.done()
    store.allow_read()
    assert (await asyncio.wait_for(at_deadline, 5)).state is MemeState.QUEUED


async def test_a_first_read_is_answered_though_the_subscribers_left_during_the_read(
    store: GatedStore, watcher: Watcher
) -> None:
    """Found by the two-api e2e test (404 for a meme that exists): a first read of an id
    that another waiter subscribed to meanwhile; the stamp showed nothing new, and that
    waiter left while the read tick's other full reads were made. The answer is the
    status the subscriber held when the stamps came, not "no such meme"."""
    queued = store.put(mid(1), MemeState.QUEUED)
    store.put(mid(2), MemeState.QUEUED)
    first = asyncio.ensure_future(current(watcher, cast(MemeStore, store), mid(1)))
    other = asyncio.ensure_future(current(watcher, cast(MemeStore, store), mid(2)))
    await settle()  # both wait for the read
    client = Client()
    poll = asyncio.ensure_future(
        long_poll(watcher, cast(MemeStore, store), queued, 60, client.receive)
    )
    await settle()
    store.full_gate = asyncio.Event()
    await one_tick(store)  # stamps of both; the full read of mid(2) waits
    assert store.full_reads == [[mid(2)]]
    client.disconnect()
    await settle()
    assert watcher.watched == 0
    store.full_gate.set()
    answered = await asyncio.wait_for(first, 10)
    assert answered is not None
    assert answered.state is MemeState.QUEUED
    assert (await other) is not None
    assert (await poll).state is MemeState.QUEUED
    assert store.gets == 0


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
    assert (store.feeds, store.reads) == ([], [])


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
    No watcher tick ever runs (no read is allowed): the waiter's own read still answers."""
    watcher = Watcher(
        cast(MemeStore, store), max_waiters=3, max_calls_per_s=1000, confirm_timeout_s=0.01
    )
    first = store.put(mid(3), MemeState.RENDERING)
    store.put(mid(3), MemeState.DONE)
    seen = await long_poll(watcher, cast(MemeStore, store), first, 0.01, Client().receive)
    assert seen.state is MemeState.DONE
    assert store.gets == 1
    assert watcher.waiters == 0


async def test_a_waiter_whose_read_is_under_way_waits_for_it_past_the_confirm_timeout(
    store: GatedStore,
) -> None:
    """bench.waiting: 1,000 clients connecting to a table slowed by load; their batched
    first read took over the 2 s confirm timeout, and each then made a GetItem of its
    own (1,004 over the run), slower still. A read under way is waited for; a waiter
    whose id no read has taken still reads for itself (test above)."""
    watcher = Watcher(
        cast(MemeStore, store), max_waiters=3, max_calls_per_s=1000, confirm_timeout_s=0.01
    )
    task = asyncio.create_task(watcher.run())
    try:
        store.put(mid(2), MemeState.QUEUED)
        first = asyncio.ensure_future(current(watcher, cast(MemeStore, store), mid(2)))
        await asyncio.sleep(0.1)  # the read began, and the confirm timeout passed
        assert not first.done()
        await one_tick(store)
        answered = await asyncio.wait_for(first, 10)
        assert answered is not None
        assert answered.state is MemeState.QUEUED
        assert store.gets == 0
    finally:
        task.cancel()


async def test_deadline_waiters_share_one_consistent_read(
    store: GatedStore, watcher: Watcher
) -> None:
    """docs/waiting.md "Truth on the deadline": the watcher's batched consistent read
    answers every waiter whose deadline came, even of a change the feed has not shown."""
    firsts = [store.put(mid(n), MemeState.QUEUED) for n in range(3)]
    store.put(mid(2), MemeState.RENDERING)
    store.lagging.add(mid(2))
    store.feed_open = True
    polls = [polling(watcher, store, f, 0.01) for f in firsts]
    await asyncio.sleep(0.05)  # every deadline passed; the read waits for the test
    # Usually one read answers all three; on a starved loop a deadline can come just
    # after a read began, and the next read takes it. Either way no waiter reads alone.
    for _ in range(len(polls)):
        store.allow_read()
        await asyncio.wait(polls, timeout=0.5)
    seen = [(await poll).state for poll in polls]
    assert seen == [MemeState.QUEUED, MemeState.QUEUED, MemeState.RENDERING]
    assert sorted(i for read in store.reads for i in read) == [mid(0), mid(1), mid(2)]
    assert store.gets == 0


async def test_a_long_poll_asked_again_starts_from_the_watchers_read(
    store: GatedStore, watcher: Watcher
) -> None:
    """docs/waiting.md "a long-poll asked again" starts from the watcher's status."""
    first = store.put(mid(4), MemeState.QUEUED)
    store.feed_open = True
    poll = polling(watcher, store, first, 0.01)
    await asyncio.sleep(0.05)
    store.allow_read()
    assert (await poll).state is MemeState.QUEUED
    again = await current(watcher, cast(MemeStore, store), mid(4))
    assert again is not None
    assert again.state is MemeState.QUEUED
    assert store.gets == 0


async def test_a_deleted_meme_is_not_served_from_the_watchers_read(
    store: GatedStore, watcher: Watcher
) -> None:
    """Found by schemathesis (stateful): DELETE /memes/{id}, then its event stream started
    from the status a read had confirmed before the deletion. Deleted through this
    process: forget(). (Through another replica, a confirmed status is trusted for at most
    RECENT_S = 1 s, and a read that finds the id gone drops it at once.)"""
    first = store.put(mid(5), MemeState.QUEUED)
    store.feed_open = True
    poll = polling(watcher, store, first, 0.01)
    await asyncio.sleep(0.05)
    store.allow_read()
    assert (await poll).state is MemeState.QUEUED
    assert watcher.held(mid(5)) is not None
    del store.items[mid(5)]
    watcher.forget(mid(5))
    assert watcher.held(mid(5)) is None
    again = asyncio.ensure_future(current(watcher, cast(MemeStore, store), mid(5)))
    await one_tick(store)
    assert await again is None
    assert store.gets == 0  # the watcher's batched read told


async def test_new_waiters_share_one_batched_read_and_no_read_of_their_own(
    store: GatedStore, watcher: Watcher
) -> None:
    """docs/waiting.md "The first read": N new waiters on memes nobody watches cost one
    BatchGetItem on the next read tick (stamps, then the statuses), not N GetItems;
    a meme that does not exist is answered None by the same read."""
    for n in range(3):
        store.put(mid(n), MemeState.QUEUED)
    firsts = [
        asyncio.ensure_future(current(watcher, cast(MemeStore, store), mid(n))) for n in range(4)
    ]
    await settle()
    await one_tick(store)
    seen = [await first for first in firsts]
    assert [s.state if s else None for s in seen] == [MemeState.QUEUED] * 3 + [None]
    assert [sorted(read) for read in store.reads] == [[mid(0), mid(1), mid(2), mid(3)]]
    assert [sorted(read) for read in store.full_reads] == [[mid(0), mid(1), mid(2)]]
    assert store.gets == 0


async def test_a_long_poll_woken_by_the_feed_is_asked_again_from_what_the_watcher_holds(
    store: GatedStore, watcher: Watcher
) -> None:
    """docs/waiting.md "The first read": the status a waiter let go answers its re-ask,
    and the feed keeps reading the id in between, so a change in that gap is not lost
    to the next request (nor read by it)."""
    first = store.put(mid(6), MemeState.QUEUED)
    poll = polling(watcher, store, first, 60)
    await settle()
    store.put(mid(6), MemeState.RENDERING)
    store.allow_feed()
    assert (await poll).state is MemeState.RENDERING
    assert watcher.watched == 0
    held = watcher.held(mid(6))
    assert held is not None
    assert held.state is MemeState.RENDERING

    store.put(mid(6), MemeState.DONE)  # between the answer and the client asking again
    await one_feed_query(store)
    again = await current(watcher, cast(MemeStore, store), mid(6))
    assert again is not None
    assert again.state is MemeState.DONE
    assert (store.reads, store.gets) == ([], 0)


def test_long_polls_that_came_together_end_apart() -> None:
    """waiting.DEADLINE_SPREAD: the same ``?wait`` ends anywhere in its last tenth, so a
    crowd that came together does not end and ask again together every round."""
    waits = [spread(20) for _ in range(50)]
    assert all(20 * (1 - DEADLINE_SPREAD) <= wait <= 20 for wait in waits)
    assert max(waits) - min(waits) > 20 * DEADLINE_SPREAD / 2


def test_the_feed_window_spans_every_minute_bucket_it_touches() -> None:
    """A query window across a minute boundary reads both buckets (items.feed_buckets)."""
    since = datetime(2026, 1, 1, 10, 59, 59, 500_000, tzinfo=UTC)
    assert feed_buckets(since, since + timedelta(seconds=0.4)) == ["2026-01-01T10:59"]
    assert feed_buckets(since, since + timedelta(seconds=1)) == [
        "2026-01-01T10:59",
        "2026-01-01T11:00",
    ]
    assert feed_bucket(since + timedelta(seconds=1)) == "2026-01-01T11:00"

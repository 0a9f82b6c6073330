"""Long-poll and server-sent events over the process's watcher.

Each waiting request subscribes to its meme and sleeps until the watcher wakes it; a
client that disconnects is unsubscribed at once (a task listens for the disconnect),
and a waiter that saw nothing move reads the item itself on its deadline, so the answer
is the truth then even if a watcher tick failed.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator

from memeforge_common.items import MemeStore
from memeforge_common.models import MemeStatus
from starlette.types import Receive

from memeforge_api.problems import Problem
from memeforge_api.schemas import MemeView
from memeforge_api.watcher import Subscription, TooManyWaiters, Unconfirmed, Watcher

WAITERS_RETRY_AFTER_S = 2
# A long-poll ends (unchanged) somewhere in the last tenth of its wait, not all on the
# same tick: clients that came together (a crowd connecting, an api restart) would
# otherwise end and ask again together every round, a burst of requests that delays
# every other waiter's news while the api serves it.
DEADLINE_SPREAD = 0.1


class _Waiting:
    """A subscription that ends when the request ends or the client disconnects."""

    def __init__(
        self, watcher: Watcher, status: MemeStatus, receive: Receive, *, keepalive: bool
    ) -> None:
        try:
            self.sub = watcher.subscribe(status, keepalive=keepalive)
        except TooManyWaiters as err:
            raise Problem(
                503,
                "too-many-waiters",
                "Too many clients are waiting on this server",
                "Try again shortly, or poll without ?wait.",
                headers={"Retry-After": str(WAITERS_RETRY_AFTER_S)},
            ) from err
        self._watcher = watcher
        self._gone = asyncio.ensure_future(_until_disconnected(receive))
        self._gone.add_done_callback(lambda _: watcher.unsubscribe(self.sub))

    def close(self) -> None:
        self._gone.cancel()
        self._watcher.unsubscribe(self.sub)


async def _until_disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def current(watcher: Watcher, store: MemeStore, meme_id: str) -> MemeStatus | None:
    """A waiter's starting point: what the watcher holds of the meme while it is fresh,
    else its next batched read; None if there is no such meme."""
    return watcher.held(meme_id) or await _read(watcher, store, meme_id)


async def _read(watcher: Watcher, store: MemeStore, meme_id: str) -> MemeStatus | None:
    """A consistent read: the watcher's batched one (within a read tick), else one of the
    request's own, so a failing watcher never leaves a waiter with a stale answer."""
    try:
        return await watcher.confirm(meme_id)
    except Unconfirmed:
        return await store.get(meme_id)


async def _truth(watcher: Watcher, store: MemeStore, sub: Subscription) -> MemeStatus:
    """The status at a waiter's deadline, by a consistent read."""
    latest = await _read(watcher, store, sub.meme_id)
    if latest is not None:
        sub.offer(latest)
    return sub.status


async def long_poll(
    watcher: Watcher, store: MemeStore, first: MemeStatus, wait_s: float, receive: Receive
) -> MemeStatus:
    """The item once its state differs from ``first``'s, or as it is after ``wait_s``."""
    if first.state.terminal:
        return first
    deadline = time.monotonic() + spread(wait_s)
    waiting = _Waiting(watcher, first, receive, keepalive=False)
    sub = waiting.sub
    try:
        while sub.status.state == first.state and not sub.closed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return await _truth(watcher, store, sub)
            await sub.wait(remaining)
        return sub.status
    finally:
        waiting.close()


def spread(wait_s: float) -> float:
    """How long a long-poll of ``wait_s`` waits: up to ``DEADLINE_SPREAD`` of it less."""
    return wait_s * (1 - random.uniform(0, DEADLINE_SPREAD))


def event_stream(
    watcher: Watcher, store: MemeStore, first: MemeStatus, stream_s: float, receive: Receive
) -> AsyncIterator[str]:
    """One ``state`` event per state seen, until DONE or FAILED or ``stream_s``; keep-alive
    comments on the watcher's beat. Subscribes now, so that the bound answers 503 before
    the stream starts. A meme that moved twice within one tick yields one event for its
    latest state; its ``state_times`` carry every state it passed through."""
    waiting = _Waiting(watcher, first, receive, keepalive=True)
    sub = waiting.sub

    async def events() -> AsyncIterator[str]:
        try:
            sent = first
            yield sse(first)
            deadline = time.monotonic() + stream_s
            while not sent.state.terminal and not sub.closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    if (await _truth(watcher, store, sub)).state != sent.state:
                        yield sse(sub.status)
                    return
                await sub.wait(remaining)
                if sub.status.state != sent.state:
                    sent = sub.status
                    yield sse(sent)
                elif sub.take_beat():
                    yield ": keep-alive\n\n"
        finally:
            waiting.close()

    return events()


def sse(status: MemeStatus) -> str:
    view = MemeView.of(status).model_dump_json()
    return f"event: state\nid: {status.state.value}\ndata: {view}\n\n"

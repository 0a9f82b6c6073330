"""Concurrent reads of one key share one call (a cache's misses, past an expiry)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SharedReads(Generic[K, V]):
    """A crowd of requests that find an entry missing or expired together (1,000 clients
    connecting, 500 long-polls asked again at once) makes one read of it, not one each."""

    def __init__(self) -> None:
        self._under_way: dict[K, asyncio.Future[V]] = {}

    async def read(self, key: K, read: Callable[[], Awaitable[V]]) -> V:
        """``read()``'s answer, or that of the read of ``key`` already under way."""
        reading = self._under_way.get(key)
        if reading is None:
            reading = asyncio.ensure_future(read())
            self._under_way[key] = reading
            reading.add_done_callback(lambda done: self._done(key, done))
        # Shielded: a request that goes away does not cancel the others' read.
        return await asyncio.shield(reading)

    def _done(self, key: K, done: asyncio.Future[V]) -> None:
        del self._under_way[key]
        if not done.cancelled():
            done.exception()  # retrieved: every waiter may have gone; they saw it if not

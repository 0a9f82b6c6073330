"""One watcher per api process: every long-poll and event stream waits on it.

It holds the set of meme ids that this process's clients wait on and reads them all
together (BatchGetItem, 100 ids a call) on one tick, then wakes the subscriptions whose
meme moved. So DynamoDB sees about ``watched / 100`` calls a tick, whatever the number of
waiters, and nothing polls per client. The tick is fast (50 ms) right after a submit, a
new subscription or a change, backs off to 1 s while nothing moves, and never spends more
than ``max_calls_per_s`` calls a second. The same clock beats the event streams'
keep-alives, so no stream keeps a timer of its own.

A subscription is keyed by the meme id it was admitted for; the route checks access to
that id (e.g. its tenant) once, before subscribing, and the watcher only ever hands a
subscription the status of its own id.
"""

from __future__ import annotations

import asyncio
import logging
import math
from contextlib import suppress
from datetime import datetime

from botocore.exceptions import BotoCoreError, ClientError
from memeforge_common.items import BATCH_GET_KEYS, MemeStore
from memeforge_common.metrics import WAITERS, WATCHED_MEMES, WATCHER_CALLS, WATCHER_ITEMS
from memeforge_common.models import MemeStatus

log = logging.getLogger(__name__)

FAST_TICK_S = 0.05
SLOW_TICK_S = 1.0
TICK_BACKOFF = 1.5
KEEPALIVE_S = 15.0


class TooManyWaiters(Exception):
    """The process already serves its maximum number of waiters."""


class Subscription:
    """One waiting client: woken when its meme's status moves, on a keep-alive beat, or
    when it is closed (the client went away)."""

    def __init__(self, status: MemeStatus, *, keepalive: bool) -> None:
        self.status = status
        self.keepalive = keepalive
        self.beat = False
        self.closed = False
        self._wake = asyncio.Event()

    @property
    def meme_id(self) -> str:
        return self.status.id

    def offer(self, status: MemeStatus) -> bool:
        """Take a newer status of the meme; True if it is news. A read that started before
        the subscriber's own may arrive after it: never go back in time."""
        if status == self.status or status.updated_at < self.status.updated_at:
            return False
        self.status = status
        self._wake.set()
        return True

    def take_beat(self) -> bool:
        beat, self.beat = self.beat, False
        return beat

    def wake(self, *, beat: bool = False) -> None:
        self.beat = self.beat or beat
        self._wake.set()

    async def wait(self, seconds: float) -> None:
        """Until woken (already woken returns at once) or ``seconds`` pass."""
        with suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()


class Watcher:
    def __init__(
        self,
        store: MemeStore,
        *,
        max_waiters: int,
        max_calls_per_s: float,
        fast_tick_s: float = FAST_TICK_S,
        slow_tick_s: float = SLOW_TICK_S,
        keepalive_s: float = KEEPALIVE_S,
    ) -> None:
        self._store = store
        self._max_waiters = max_waiters
        self._max_calls_per_s = max_calls_per_s
        self._fast = fast_tick_s
        self._slow = slow_tick_s
        self._keepalive_s = keepalive_s
        self._subs: dict[str, set[Subscription]] = {}
        # The status each tick read, and when: new waiters on a meme read just now start
        # from it instead of a GetItem of their own (a long-poll asked again, say).
        self._recent: dict[str, tuple[MemeStatus, float]] = {}
        self._waiters = 0
        self._interval = fast_tick_s
        self._nudge = asyncio.Event()
        self._last_tick = 0.0
        self._last_calls = 0

    @property
    def watched(self) -> int:
        """Meme ids in the set the watcher reads."""
        return len(self._subs)

    @property
    def waiters(self) -> int:
        return self._waiters

    def recent(self, meme_id: str) -> MemeStatus | None:
        """The status a tick read within the last two tick periods, if any: as fresh as
        a read of one's own would be by the time the next tick comes."""
        entry = self._recent.get(meme_id)
        if entry is None or asyncio.get_running_loop().time() - entry[1] > self._fresh_s():
            return None
        return entry[0]

    def forget(self, meme_id: str) -> None:
        """The meme was deleted: no waiter may start from what a tick read of it."""
        self._recent.pop(meme_id, None)

    def hurry(self) -> None:
        """A change is likely soon (a submit, a new waiter): tick fast again."""
        self._interval = self._fast
        self._nudge.set()

    def subscribe(self, status: MemeStatus, *, keepalive: bool = False) -> Subscription:
        """Wake the subscription on each change of ``status.id`` until ``unsubscribe``.
        Raises TooManyWaiters past the bound."""
        if self._waiters >= self._max_waiters:
            raise TooManyWaiters(f"{self._waiters} waiters")
        sub = Subscription(status, keepalive=keepalive)
        self._subs.setdefault(sub.meme_id, set()).add(sub)
        self._waiters += 1
        self._publish_sizes()
        self.hurry()
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """At once, e.g. when the client disconnects; idempotent."""
        if sub.closed:
            return
        sub.closed = True
        subs = self._subs.get(sub.meme_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.meme_id]
        self._waiters -= 1
        self._publish_sizes()
        sub.wake()

    async def run(self) -> None:
        """The one loop: runs for the process's life (the lifespan cancels it)."""
        loop = asyncio.get_running_loop()
        last_beat = loop.time()
        while True:
            await self._until_next_tick()
            self._last_tick = loop.time()
            moved = await self._tick()
            if self._last_tick - last_beat >= self._keepalive_s:
                last_beat = self._last_tick
                for subs in self._subs.values():
                    for sub in subs:
                        if sub.keepalive:
                            sub.wake(beat=True)
            self._interval = self._fast if moved else min(self._interval * TICK_BACKOFF, self._slow)

    async def _tick(self) -> bool:
        """Read every watched id's ``updated_at``; then full statuses of those that moved."""
        ids = list(self._subs)
        if not ids:
            return False
        try:
            stamps, calls = await self._store.stamps(ids)
            moved_ids = [i for i, t in stamps.items() if i in self._subs and t > self._known(i)]
            statuses, more = await self._store.statuses(moved_ids) if moved_ids else ({}, 0)
        except (BotoCoreError, ClientError) as err:
            # Waiters still read the truth on their deadline; the next tick tries again.
            log.warning("watcher read failed: %s", err)
            return False
        except Exception:
            # Whatever else (an unreadable item, say) must not stop the one loop.
            log.exception("watcher tick failed")
            return False
        self._last_calls = calls + more
        WATCHER_CALLS.inc(self._last_calls)
        WATCHER_ITEMS.inc(len(stamps) + len(statuses))
        read_at = asyncio.get_running_loop().time()
        stale = read_at - self._fresh_s()
        # Gone from the table (deleted, e.g. by another replica): gone from here too.
        self._recent = {
            i: e for i, e in self._recent.items() if e[1] >= stale and (i in stamps or i not in ids)
        }
        moved = False
        for meme_id in stamps:
            subs = list(self._subs.get(meme_id, ()))
            status = statuses.get(meme_id)
            for sub in subs:
                moved = (status is not None and sub.offer(status)) or moved
            latest = max((sub.status for sub in subs), key=lambda s: s.updated_at, default=None)
            if latest is not None and latest.updated_at >= stamps[meme_id]:
                self._recent[meme_id] = (latest, read_at)  # confirmed as of this read
        return moved

    def _known(self, meme_id: str) -> datetime:
        """The oldest ``updated_at`` a subscriber of the meme holds."""
        return min(sub.status.updated_at for sub in self._subs.get(meme_id, ()))

    def _period_s(self) -> float:
        calls = max(self._last_calls, math.ceil(len(self._subs) / BATCH_GET_KEYS))
        return max(self._interval, calls / self._max_calls_per_s)

    def _fresh_s(self) -> float:
        return 2 * max(self._slow, self._period_s())

    async def _until_next_tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._nudge.clear()
            if not self._subs:
                await self._nudge.wait()
                continue
            delay = self._last_tick + self._period_s() - loop.time()
            if delay <= 0:
                return
            with suppress(TimeoutError):
                await asyncio.wait_for(self._nudge.wait(), delay)

    def _publish_sizes(self) -> None:
        WATCHED_MEMES.set(len(self._subs))
        WAITERS.set(self._waiters)

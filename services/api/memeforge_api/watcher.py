"""One watcher per api process: every long-poll and event stream waits on it.

It holds the set of meme ids that this process's clients wait on, and two reads keep
their subscriptions true (docs/waiting.md):

* **The change feed, on a fast tick.** One Query of the table's ``changes`` index
  (``MemeStore.changes``: what changed in the last second or so, with the fields a
  waiter needs) wakes the subscriptions whose meme moved. Its cost follows the number of
  state changes, not of waiters, so the tick can stay at 50 ms while memes move.
* **Consistent batched reads, on a slower tick.** The index is eventually consistent, so
  it only hurries news along; the truth is BatchGetItem (100 ids a call): of the waiters
  that reached their deadline (``confirm``), and round-robin of every watched id at
  least once per sweep. A change the feed missed is seen within a sweep, and a waiter's
  answer on its deadline is a consistent read, as before the feed existed.

Every call the watcher makes draws from one budget of ``max_calls_per_s``: more waiters
stretch the sweep, never the call rate. The feed tick backs off while nothing moves
and is fast again after a submit or a change. The same clock beats
the event streams' keep-alives, so no stream keeps a timer of its own.

A waiting request's first read is the watcher's too (``held``, else ``confirm``): what
it holds for the id while it is fresh (a subscriber's status, kept true by the feed and
the sweep; or one read or let go within ``RECENT_S``, whose id the feed keeps reading),
else the id joins the next batched read. So new waiters and long-polls asked again cost
no call of their own, and the budget bounds every call the waiting paths make.

A subscription is keyed by the meme id it was admitted for; the route checks access to
that id (e.g. its tenant) on the status the watcher hands it, before subscribing, and
the watcher only ever hands a subscription the status of its own id.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Container
from contextlib import suppress
from datetime import UTC, datetime, timedelta

from botocore.exceptions import BotoCoreError, ClientError
from memeforge_common.items import BATCH_GET_KEYS, MemeStore
from memeforge_common.metrics import WAITERS, WATCHED_MEMES, WATCHER_CALLS, WATCHER_ITEMS
from memeforge_common.models import MemeStatus, utcnow

log = logging.getLogger(__name__)

FAST_TICK_S = 0.05
SLOW_TICK_S = 0.2
TICK_BACKOFF = 1.5
# Consistent reads are batched over this long: a deadline answer waits at most this.
READ_TICK_S = 0.25
# Every watched id is read consistently at least this often (while the budget allows).
SWEEP_S = 5.0
# Each feed query reaches this far back past the previous one: the skew between the
# writers' clocks and this one (a change stamped a little before our last query).
FEED_SKEW = timedelta(milliseconds=50)
# The index is eventually consistent: once a second a trailing query reads again what
# changed between two and one second ago, for an entry that showed late. Together each
# change is read about three times, not once per tick of an ever-open window.
FEED_LAG = timedelta(seconds=1)
# Older than this, the feed is not read back: after a long outage the sweep catches up.
FEED_CATCH_UP = timedelta(seconds=60)
# A status a consistent read confirmed, or the last subscriber held, this recently
# answers a new waiter on the meme (the feed keeps reading the id meanwhile).
RECENT_S = 1.0
# Waiters' ids one read tick takes (its 100-key calls in parallel): a crowd arriving at
# once (1,000 clients connecting, 500 deadlines together) is read in a tick or two,
# well within the confirm timeout; the budget then slows the ticks after it.
PENDING_PER_READ = 10 * BATCH_GET_KEYS
# A deadline waiter that the watcher has not answered by then reads for itself, unless
# the batched read that took its request is under way by then: that one is no slower
# than the waiter's own (the same table), and 1,000 GetItems of waiters' own at once (a
# crowd connecting to a slow table) made every read slower. The SDK's timeouts bound it.
CONFIRM_TIMEOUT_S = 2.0
KEEPALIVE_S = 15.0


class TooManyWaiters(Exception):
    """The process already serves its maximum number of waiters."""


class Unconfirmed(Exception):
    """The watcher could not read the meme in time (a failing read, a full budget): the
    caller reads for itself."""


class _Watching(Container[str]):
    """The ids the feed reads: those subscribed, and those held in ``recent``."""

    def __init__(self, *held: Container[str]) -> None:
        self._held = held

    def __contains__(self, meme_id: object) -> bool:
        return any(meme_id in ids for ids in self._held)


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
        the subscriber's own (or a lagging index) may arrive after it: never go back."""
        if (
            status == self.status
            or status.updated_at < self.status.updated_at
            or self.status.state.terminal
        ):
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


class CallBudget:
    """At most ``rate`` calls a second on average, bursts of ``burst``: calls are counted
    after they are made (a page or a retry costs what it cost) and the next waits."""

    def __init__(self, rate: float, burst: float = 2.0) -> None:
        self._rate = rate
        self._burst = burst
        self._tokens = burst
        self._at = 0.0

    async def ready(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens < 1:
            await asyncio.sleep((1 - self._tokens) / self._rate)

    def spent(self, calls: int) -> None:
        self._tokens -= calls
        WATCHER_CALLS.inc(calls)


class Watcher:
    def __init__(
        self,
        store: MemeStore,
        *,
        max_waiters: int,
        max_calls_per_s: float,
        fast_tick_s: float = FAST_TICK_S,
        slow_tick_s: float = SLOW_TICK_S,
        read_tick_s: float = READ_TICK_S,
        sweep_s: float = SWEEP_S,
        confirm_timeout_s: float = CONFIRM_TIMEOUT_S,
        keepalive_s: float = KEEPALIVE_S,
    ) -> None:
        self._store = store
        self._max_waiters = max_waiters
        self._budget = CallBudget(max_calls_per_s)
        self._fast = fast_tick_s
        self._slow = slow_tick_s
        self._read_tick_s = read_tick_s
        self._sweep_s = sweep_s
        self._confirm_timeout_s = confirm_timeout_s
        self._keepalive_s = keepalive_s
        self._subs: dict[str, set[Subscription]] = {}
        # When each watched id was last read consistently, oldest first: the sweep's order.
        self._checked: dict[str, float] = {}
        # Deadline waiters' requests for a consistent read, by id.
        self._pending: dict[str, list[asyncio.Future[MemeStatus | None]]] = {}
        # The requests whose read is under way (taken from ``_pending`` by the read tick).
        self._reading: set[asyncio.Future[MemeStatus | None]] = set()
        # Statuses a consistent read confirmed or the last subscriber let go, and when,
        # oldest first: a new waiter on a meme read just now (a long-poll asked again,
        # say) starts from it instead of a read. The feed keeps them true meanwhile.
        self._recent: dict[str, tuple[MemeStatus, float]] = {}
        # Watched ids found deleted: their subscribers' statuses answer no new waiter.
        self._gone: set[str] = set()
        self._watching = _Watching(self._subs, self._recent)
        self._waiters = 0
        self._interval = fast_tick_s
        self._nudge = asyncio.Event()
        # The batched read under way: it runs beside the feed, never in front of it.
        self._reader: asyncio.Task[bool] | None = None
        self._next_feed = 0.0
        self._last_read = 0.0
        # The feed's cursors: the fast window's start, and the trailing window's.
        self._since = self._lag_since = datetime.min.replace(tzinfo=UTC)

    @property
    def watched(self) -> int:
        """Meme ids in the set the watcher reads."""
        return len(self._subs)

    @property
    def waiters(self) -> int:
        return self._waiters

    def held(self, meme_id: str) -> MemeStatus | None:
        """A fresh status of the meme, if the watcher holds one: the newest of its
        subscribers', else one confirmed or let go within ``RECENT_S``. Either way the
        feed reads the id, so a change since is on its way to the new waiter."""
        subs = self._subs.get(meme_id)
        if subs and meme_id not in self._gone:
            return _newest(subs)
        entry = self._recent.get(meme_id)
        if entry is None or asyncio.get_running_loop().time() - entry[1] > RECENT_S:
            return None
        return entry[0]

    def forget(self, meme_id: str) -> None:
        """The meme was deleted: no waiter may start from what the watcher read of it."""
        self._recent.pop(meme_id, None)
        if meme_id in self._subs:
            self._gone.add(meme_id)

    def hurry(self) -> None:
        """A change is likely soon (a submit): tick fast again. A new waiter is no such
        sign (most are long-polls asked again), so it does not hurry the feed."""
        self._interval = self._fast
        self._next_feed = min(self._next_feed, asyncio.get_running_loop().time() + self._fast)
        if self._feeding():  # else nothing is due sooner: waking the loop would be waste
            self._nudge.set()

    def subscribe(self, status: MemeStatus, *, keepalive: bool = False) -> Subscription:
        """Wake the subscription on each change of ``status.id`` until ``unsubscribe``.
        Raises TooManyWaiters past the bound. ``status`` must come from a consistent read
        or ``held``: the sweep counts it as checked now."""
        if self._waiters >= self._max_waiters:
            raise TooManyWaiters(f"{self._waiters} waiters")
        self._start_feed()
        sub = Subscription(status, keepalive=keepalive)
        if sub.meme_id not in self._subs:
            self._subs[sub.meme_id] = set()
            self._checked[sub.meme_id] = asyncio.get_running_loop().time()
        self._subs[sub.meme_id].add(sub)
        self._waiters += 1
        self._publish_sizes()
        self._nudge.set()  # the feed may have had nothing to read until now
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
                if sub.meme_id in self._gone:
                    self._gone.discard(sub.meme_id)
                else:  # a long-poll asked again starts from it
                    self._hold(sub.status, asyncio.get_running_loop().time())
                del self._subs[sub.meme_id]
                self._checked.pop(sub.meme_id, None)
        self._waiters -= 1
        self._publish_sizes()
        sub.wake()

    async def confirm(self, meme_id: str) -> MemeStatus | None:
        """The meme's status by a consistent read, batched with the other waiters' (a
        deadline, a new waiter) on the next read tick; None if the item is gone. Raises
        Unconfirmed if the watcher could not tell within its confirm timeout."""
        future: asyncio.Future[MemeStatus | None] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(meme_id, []).append(future)
        self._nudge.set()
        try:
            return await asyncio.wait_for(asyncio.shield(future), self._confirm_timeout_s)
        except TimeoutError as err:
            if future in self._reading:
                return await future  # its read is under way: no own read, see above
            future.cancel()  # the read tick skips it
            raise Unconfirmed(meme_id) from err

    async def run(self) -> None:
        """The one loop: runs for the process's life (the lifespan cancels it). The
        batched reads run beside it, one at a time, so the feed never waits for them."""
        try:
            await self._loop()
        finally:
            if self._reader is not None:
                self._reader.cancel()

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        last_beat = loop.time()
        while True:
            await self._until_due()
            self._expire_recent()
            if self._reader is None and self._read_due_at() <= loop.time():
                # Beside the feed: a sweep's two 100-key reads held every DONE the feed
                # would have read meanwhile (bench.waiting --trace).
                self._reader = asyncio.create_task(self._call(self._read_tick))
                self._reader.add_done_callback(self._read_done)
            if self._feeding() and self._next_feed <= loop.time():
                moved = await self._call(self._feed_tick)
                self._interval = (
                    self._fast if moved else min(self._interval * TICK_BACKOFF, self._slow)
                )
                self._next_feed = loop.time() + self._interval
            if loop.time() - last_beat >= self._keepalive_s:
                last_beat = loop.time()
                for subs in self._subs.values():
                    for sub in subs:
                        if sub.keepalive:
                            sub.wake(beat=True)

    def _read_done(self, _: asyncio.Task[bool]) -> None:
        self._reader = None
        self._nudge.set()  # the next read may be due already (deadlines came meanwhile)

    async def _call(self, tick: Callable[[], Awaitable[bool]]) -> bool:
        """One tick's reads within the budget; a failure waits for the next tick."""
        await self._budget.ready()
        try:
            return await tick()
        except (BotoCoreError, ClientError) as err:
            # Waiters still read the truth on their deadline; the next tick tries again.
            log.warning("watcher read failed: %s", err)
        except Exception:
            # Whatever else (an unreadable item, say) must not stop the one loop.
            log.exception("watcher tick failed")
        return False

    async def _feed_tick(self) -> bool:
        """Offer what the change feed lists since the last query; True if any moved. The
        fast window's news is offered before the trailing query is made, so that query
        never holds it back (the offers never go back, so their order does not matter)."""
        until = utcnow()
        moved = self._offer(await self._changes(self._since, until))
        self._since = until - FEED_SKEW  # only once the read succeeded
        if until - FEED_LAG - self._lag_since >= FEED_LAG:
            late = await self._changes(self._lag_since - FEED_SKEW, until - FEED_LAG)
            self._lag_since = until - FEED_LAG
            moved = self._offer(late) or moved
        return moved

    def _offer(self, statuses: dict[str, MemeStatus]) -> bool:
        """Hand the feed's statuses to the subscribers and held entries of their ids."""
        moved = False
        for meme_id, status in statuses.items():
            held = self._recent.get(meme_id)
            if held is not None and status.updated_at > held[0].updated_at:
                self._recent[meme_id] = (status, held[1])  # news, still as fresh
            for sub in self._subs.get(meme_id, ()):
                moved = sub.offer(status) or moved
        return moved

    async def _changes(self, since: datetime, until: datetime) -> dict[str, MemeStatus]:
        """The feed's statuses of watched memes changed in (since, until]; after an
        outage, no further back than ``FEED_CATCH_UP`` (the sweep covers the rest)."""
        since = max(since, until - FEED_CATCH_UP)
        statuses, calls = await self._store.changes(since, until, self._watching)
        self._budget.spent(calls)
        WATCHER_ITEMS.inc(len(statuses))
        return statuses

    async def _read_tick(self) -> bool:
        """Consistent reads of the deadline waiters' ids and of the sweep's next ids:
        ``updated_at`` of each, then full statuses of only those that moved."""
        loop = asyncio.get_running_loop()
        self._last_read = loop.time()
        pending = {i: self._pending.pop(i) for i in list(self._pending)[:PENDING_PER_READ]}
        ids = list(pending) + self._sweep_due(BATCH_GET_KEYS - len(pending), pending)
        self._reading = {future for futures in pending.values() for future in futures}
        try:
            stamps, calls = await self._store.stamps(ids)
            self._budget.spent(calls)
            # What the subscribers hold as the stamps come: one may leave (its request
            # ended) while the full statuses are read.
            known = {i: _newest(self._subs[i]) for i in stamps if i in self._subs}
            moved_ids = [i for i in known if stamps[i] > self._known(i)]
            unwatched = [i for i in pending if i in stamps and i not in known]
            statuses, more = await self._store.statuses(moved_ids + unwatched)
            self._budget.spent(more)
        except BaseException:
            self._reading = set()
            for futures in pending.values():  # they read for themselves at once
                _fail(futures)
            raise
        self._reading = set()  # each is answered below, with no wait in between
        WATCHER_ITEMS.inc(len(stamps) + len(statuses))
        read_at = loop.time()
        moved = False
        for meme_id in ids:
            subs = self._subs.get(meme_id, set())
            if meme_id not in stamps:
                # Gone from the table (deleted, e.g. by another replica): from here too.
                self._recent.pop(meme_id, None)
                if subs:
                    self._gone.add(meme_id)
            if meme_id in self._checked:
                del self._checked[meme_id]  # to the back of the sweep
                self._checked[meme_id] = read_at
            status = statuses.get(meme_id)
            for sub in subs:
                moved = (status is not None and sub.offer(status)) or moved
            latest = _newest(subs, known.get(meme_id), status)
            truth = latest if meme_id in stamps and latest is not None else None
            if truth is not None and truth.updated_at >= stamps[meme_id]:
                self._hold(truth, read_at)  # confirmed as of this read
            _answer(pending.get(meme_id, []), truth)
        return moved

    def _hold(self, status: MemeStatus, at: float) -> None:
        """Keep ``status`` as the meme's, fresh as of ``at``: to the back of the line."""
        self._start_feed()
        self._recent.pop(status.id, None)
        self._recent[status.id] = (status, at)

    def _expire_recent(self) -> None:
        """Let go of what is no longer fresh (the oldest is first)."""
        stale_before = asyncio.get_running_loop().time() - RECENT_S
        while self._recent:
            meme_id, (_, at) = next(iter(self._recent.items()))
            if at >= stale_before:
                return
            del self._recent[meme_id]

    def _start_feed(self) -> None:
        """Before the feed's first id: changes after the caller's read are after these."""
        if not self._feeding():
            self._since = utcnow() - FEED_SKEW
            self._lag_since = self._since - FEED_LAG

    def _feeding(self) -> bool:
        """Whether the feed has ids to read."""
        return bool(self._subs or self._recent)

    def _sweep_due(self, room: int, taken: Container[str]) -> list[str]:
        """Up to ``room`` watched ids not read consistently for a sweep, oldest first."""
        if room <= 0:
            return []
        due_before = asyncio.get_running_loop().time() - self._sweep_s
        due: list[str] = []
        for meme_id, checked in self._checked.items():
            if checked > due_before or len(due) == room:
                break
            if meme_id not in taken:
                due.append(meme_id)
        return due

    def _read_due_at(self) -> float:
        """When the next consistent read is due: deadline waiters or the sweep, but no
        sooner than a read tick after the last."""
        if self._pending:
            need = 0.0
        elif self._checked:
            need = next(iter(self._checked.values())) + self._sweep_s
        else:
            return float("inf")
        return max(need, self._last_read + self._read_tick_s)

    def _known(self, meme_id: str) -> datetime:
        """The oldest ``updated_at`` a subscriber of the meme holds."""
        return min(sub.status.updated_at for sub in self._subs.get(meme_id, ()))

    async def _until_due(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._nudge.clear()
            due = self._read_due_at() if self._reader is None else float("inf")
            if self._feeding():
                due = min(due, self._next_feed)
            if due == float("inf"):
                await self._nudge.wait()
                continue
            delay = due - loop.time()
            if delay <= 0:
                return
            with suppress(TimeoutError):
                await asyncio.wait_for(self._nudge.wait(), delay)

    def _publish_sizes(self) -> None:
        WATCHED_MEMES.set(len(self._subs))
        WAITERS.set(self._waiters)


def _newest(subs: set[Subscription], *more: MemeStatus | None) -> MemeStatus | None:
    """The newest of the subscribers' statuses and ``more``."""
    statuses = [sub.status for sub in subs] + [status for status in more if status is not None]
    return max(statuses, key=lambda status: status.updated_at, default=None)


def _answer(futures: list[asyncio.Future[MemeStatus | None]], status: MemeStatus | None) -> None:
    for future in futures:
        if not future.done():  # its waiter may have given up
            future.set_result(status)


def _fail(futures: list[asyncio.Future[MemeStatus | None]]) -> None:
    for future in futures:
        if not future.done():  # a waiter awaits it, so the exception is retrieved
            future.set_exception(Unconfirmed())

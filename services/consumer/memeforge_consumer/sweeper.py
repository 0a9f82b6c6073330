"""Find items stuck in PENDING, QUEUED or RENDERING and push them back into the pipeline.

PENDING past ``rendering_timeout_s``: its request never arrived (the api died between
PutItem and SendMessage) or its render job was lost → re-send the request. The consumer
does not write QUEUED, so a PENDING item may merely be waiting in the render queue: it
gets the render timeout, not ``pending_timeout_s``, lest a backlog be sent twice.
QUEUED (an older consumer's items) or RENDERING past ``rendering_timeout_s``: the render
job was lost → re-send the job. A render is marked RENDERING only once it has run a
moment (the renderer's mark, which also moves ``updated_at``).
Each item is swept at most ``max_sweeps`` times, then FAILED as ``stuck``. The sweep
itself is a conditional write, so several consumer replicas never double-enqueue.

Ended memes still marked ``notify_due`` past ``notify_enqueue_timeout_s``: whatever
ended them died before their notifications were on the queue → publish them again
(endings.py). Two replicas may both re-publish: the copies share one event id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

from memeforge_common.endings import Endings
from memeforge_common.items import MemeStore
from memeforge_common.logs import bound
from memeforge_common.models import (
    EventType,
    Failure,
    MemeItem,
    MemeState,
    RequestMessage,
    ending_event,
    utcnow,
)
from memeforge_common.publishers import RequestPublisher
from memeforge_common.settings import Settings
from memeforge_common.tracing import child_of

from memeforge_consumer.dispatch import Dispatcher

log = logging.getLogger("memeforge.consumer.sweeper")


async def every(
    interval_s: float,
    work: Callable[[], Awaitable[object]],
    stopping: asyncio.Event,
    logger: logging.Logger,
) -> None:
    """Run ``work`` every ``interval_s`` until ``stopping``; a failed pass is logged and
    the next one comes as usual (the sweepers' loop)."""
    while not stopping.is_set():
        try:
            await work()
        except Exception as err:
            logger.warning("sweep failed: %r", err)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), timeout=interval_s)


@dataclass
class Sweeper:
    store: MemeStore
    dispatcher: Dispatcher
    requests: RequestPublisher
    endings: Endings
    settings: Settings

    async def run(self, stopping: asyncio.Event) -> None:
        await every(self.settings.sweep_interval_s, self.sweep_once, stopping, log)

    async def sweep_once(self) -> int:
        """One pass over the stuck states. Returns how many items were acted on."""
        acted = 0
        now = utcnow()
        for state, timeout in (
            (MemeState.PENDING, self.settings.rendering_timeout_s),
            (MemeState.QUEUED, self.settings.rendering_timeout_s),
            (MemeState.RENDERING, self.settings.rendering_timeout_s),
        ):
            for meme_id in await self.store.stuck(state, now - timedelta(seconds=timeout)):
                item = await self.store.get(meme_id)
                if item is not None and item.state is state:
                    with bound(meme_id=meme_id):
                        acted += await self._recover(item)
        cutoff = now - timedelta(seconds=self.settings.notify_enqueue_timeout_s)
        events: tuple[EventType, ...] = ("meme.done", "meme.failed")
        for event in events:
            for meme_id in await self.store.notify_due(event, cutoff):
                with bound(meme_id=meme_id):
                    acted += await self._renotify(meme_id, event)
        return acted

    async def _renotify(self, meme_id: str, event: EventType) -> int:
        item = await self.store.get(meme_id)
        if item is None or item.notify is None or not item.state.terminal:
            return 0
        if ending_event(item.state) != event:
            return 0
        ended_at = item.state_times.get(item.state, item.updated_at)
        log.info("re-enqueueing the notifications of an ended meme")
        sent = await self.endings.announce(
            item.id, item.tenant, item.notify, event, ended_at, child_of(item.traceparent)
        )
        return int(sent)

    async def _recover(self, item: MemeItem) -> int:
        if item.sweeps >= self.settings.max_sweeps:
            failure = Failure(
                reason="stuck", detail=f"{item.state.value} after {item.sweeps} sweeps"
            )
            await self._fail(item, failure)
            log.warning("stuck item failed after %d sweeps", item.sweeps)
            return 1
        if not await self.store.mark_swept(item):
            return 0  # it moved meanwhile, or another replica swept it
        if item.state is MemeState.PENDING:
            await self.requests.publish(RequestMessage.of(item), child_of(item.traceparent))
        else:
            unrenderable = await self.dispatcher.resend(item)
            if unrenderable is not None:
                await self._fail(item, unrenderable)
        log.info("re-enqueued a stuck %s item", item.state.value)
        return 1

    async def _fail(self, item: MemeItem, failure: Failure) -> None:
        await self.endings.end(
            item.id,
            MemeState.FAILED,
            tenant=item.tenant,
            notify=item.notify,
            batch_id=item.batch_id,
            traceparent=child_of(item.traceparent),
            slot=item.in_flight_slot,
            failure=failure,
        )

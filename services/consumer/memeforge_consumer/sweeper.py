"""Find items stuck in PENDING or RENDERING and push them back into the pipeline.

PENDING past ``pending_timeout_s``: the API wrote the item but its request message
never arrived (e.g. it died between PutItem and SendMessage) → re-send the request.
RENDERING past ``rendering_timeout_s``: the render job was lost → re-send the job.
Each item is swept at most ``max_sweeps`` times, then FAILED as ``stuck``. The sweep
itself is a conditional write, so several consumer replicas never double-enqueue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import timedelta

from memeforge_common.items import MemeStore
from memeforge_common.logs import bound
from memeforge_common.models import Failure, MemeItem, MemeState, RequestMessage, utcnow
from memeforge_common.publishers import RequestPublisher
from memeforge_common.settings import Settings
from memeforge_common.tracing import child_of

from memeforge_consumer.dispatch import Dispatcher

log = logging.getLogger("memeforge.consumer.sweeper")


@dataclass
class Sweeper:
    store: MemeStore
    dispatcher: Dispatcher
    requests: RequestPublisher
    settings: Settings

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                await self.sweep_once()
            except Exception as err:
                log.warning("sweep failed: %r", err)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=self.settings.sweep_interval_s)

    async def sweep_once(self) -> int:
        """One pass over both stuck states. Returns how many items were acted on."""
        acted = 0
        now = utcnow()
        for state, timeout in (
            (MemeState.PENDING, self.settings.pending_timeout_s),
            (MemeState.RENDERING, self.settings.rendering_timeout_s),
        ):
            for meme_id in await self.store.stuck(state, now - timedelta(seconds=timeout)):
                item = await self.store.get(meme_id)
                if item is not None and item.state is state:
                    with bound(meme_id=meme_id):
                        acted += await self._recover(item)
        return acted

    async def _recover(self, item: MemeItem) -> int:
        if item.sweeps >= self.settings.max_sweeps:
            failure = Failure(
                reason="stuck", detail=f"{item.state.value} after {item.sweeps} sweeps"
            )
            await self.store.transition(
                item.id, MemeState.FAILED, failure=failure, slot=item.in_flight_slot
            )
            log.warning("stuck item failed after %d sweeps", item.sweeps)
            return 1
        if not await self.store.mark_swept(item):
            return 0  # it moved meanwhile, or another replica swept it
        if item.state is MemeState.PENDING:
            await self.requests.publish(RequestMessage(meme_id=item.id), child_of(item.traceparent))
        else:
            unrenderable = await self.dispatcher.resend(item)
            if unrenderable is not None:
                await self.store.transition(
                    item.id, MemeState.FAILED, failure=unrenderable, slot=item.in_flight_slot
                )
        log.info("re-enqueued a stuck %s item", item.state.value)
        return 1

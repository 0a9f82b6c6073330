"""Move batches on that nobody else will: archive the finished ones, finish the rest.

Each pass queries the live-items index for batches (never a Scan). Every
``batch_sweep_interval_s``:
- ARCHIVING (every item ended): claim it, build its ZIP, publish its ``batch.done``
  notification (when it asked for one), mark it DONE.
The recovery states wait a minute or more before they are acted on, so they are
queried only every ``sweep_interval_s`` (fewer calls, issue #12):
- BUILDING past ``rendering_timeout_s``: the consumer building that ZIP died; claim again;
- SUBMITTING past ``pending_timeout_s``: the api died part way through the fan-out; run
  the fan-out again from the stored request (it writes only what is missing);
- RUNNING, quiet past ``pending_timeout_s``: whoever ended its last item died before
  moving it to ARCHIVING; check the counters again.
Every move is a conditional write, so replicas never build one archive twice at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from memeforge_common.batches import BUILDING, BatchStore, live_state
from memeforge_common.endings import batch_done_notifications
from memeforge_common.fanout import fan_out
from memeforge_common.items import MemeStore
from memeforge_common.logs import bound
from memeforge_common.models import Batch, BatchState, utcnow
from memeforge_common.outputs import OutputStore
from memeforge_common.publishers import NotificationPublisher, PublishFailed, RequestPublisher
from memeforge_common.settings import Settings
from memeforge_common.tracing import child_of

from memeforge_consumer.archive import ArchiveWriter
from memeforge_consumer.sweeper import every

log = logging.getLogger("memeforge.consumer.batches")


@dataclass
class BatchSweeper:
    batches: BatchStore
    memes: MemeStore
    outputs: OutputStore
    requests: RequestPublisher
    notifications: NotificationPublisher
    settings: Settings

    async def run(self, stopping: asyncio.Event) -> None:
        await asyncio.gather(
            every(self.settings.batch_sweep_interval_s, self.archive_ended, stopping, log),
            every(self.settings.sweep_interval_s, self.recover_stalled, stopping, log),
        )

    async def sweep_once(self) -> int:
        """One pass over every state; returns how many batches it moved on."""
        return await self.archive_ended() + await self.recover_stalled()

    async def archive_ended(self) -> int:
        return await self._sweep(((live_state(BatchState.ARCHIVING), 0.0, self._archive),))

    async def recover_stalled(self) -> int:
        return await self._sweep(
            (
                (BUILDING, self.settings.rendering_timeout_s, self._archive),
                (live_state(BatchState.SUBMITTING), self.settings.pending_timeout_s, self._resume),
                (live_state(BatchState.RUNNING), self.settings.pending_timeout_s, self._recount),
            )
        )

    async def _sweep(
        self, ages: Sequence[tuple[str, float, Callable[[Batch], Awaitable[int]]]]
    ) -> int:
        now = utcnow()
        acted = 0
        for live, age_s, act in ages:
            cutoff = now - timedelta(seconds=age_s) + timedelta(milliseconds=1)
            for batch_id in await self.batches.waiting(live, cutoff):
                batch = await self.batches.get(batch_id)
                if batch is not None:
                    with bound(batch_id=batch_id):
                        acted += await act(batch)
        return acted

    async def _archive(self, batch: Batch) -> int:
        if batch.state is not BatchState.ARCHIVING or not await self.batches.claim_archive(batch):
            return 0  # moved on, or another replica took it
        archive = await ArchiveWriter(self.memes, self.outputs).build(batch)
        # Announced before DONE is written: a consumer dying in between leaves the claim to
        # go stale, and the next one sends batch.done again: the same event id, time and
        # counts (the batch's end time is stored; records from before it have none).
        notes = batch_done_notifications(
            batch.model_copy(update={"archive": archive}), batch.ended_at or utcnow()
        )
        trace = child_of(batch.traceparent)
        if notes and await self.notifications.publish_batch([(n, trace) for n in notes]):
            raise PublishFailed("batch.done not enqueued; the claim goes stale, then again")
        if not await self.batches.advance(
            batch.id, (BatchState.ARCHIVING,), BatchState.DONE, archive=archive
        ):
            return 0
        log.info("batch archived", extra={"files": archive.files, "bytes": archive.bytes})
        return 1

    async def _resume(self, batch: Batch) -> int:
        if batch.state is not BatchState.SUBMITTING:
            return 0
        request = await self.outputs.batch_request(batch.id, batch.tenant)
        retention = timedelta(days=self.settings.retention_days)
        await fan_out(batch, request, self.memes, self.batches, self.requests, retention=retention)
        log.warning("resumed an interrupted batch fan-out")
        return 1

    async def _recount(self, batch: Batch) -> int:
        return int(await self.batches.end_if_complete(batch.id))

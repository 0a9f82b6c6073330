"""Turn a stored batch request into its memes: write each PENDING item, then enqueue.

The api runs this on ``POST /batches`` and the consumer's batch sweeper runs it again
for a batch left SUBMITTING (the api died part way). Both are safe to repeat: a batch's
meme ids are derived from the batch id and the item number, each item is created with
a conditional PutItem (one that exists is left as it is, whatever state it reached),
and a request message that was not sent leaves a PENDING item that the meme sweeper
re-sends, as for ``POST /memes``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from datetime import timedelta

from botocore.exceptions import BotoCoreError, ClientError

from memeforge_common.batches import BatchStore
from memeforge_common.items import ItemExists, MemeStore, new_item
from memeforge_common.models import Batch, BatchRequest, BatchState, MemeItem, RequestMessage
from memeforge_common.publishers import RequestPublisher
from memeforge_common.tracing import child_of

log = logging.getLogger(__name__)

# Item writes in flight at once for one batch (500 items: ~32 rounds).
WRITE_CONCURRENCY = 16


def batch_meme_id(batch_id: str, seq: int) -> str:
    """Item ``seq`` of a batch always has the same meme id, so a resumed fan-out finds
    the items an earlier one wrote instead of making new ones."""
    return hashlib.sha256(f"{batch_id}:{seq}".encode()).hexdigest()[:32]


async def fan_out(
    batch: Batch,
    request: BatchRequest,
    memes: MemeStore,
    batches: BatchStore,
    requests: RequestPublisher,
    *,
    retention: timedelta | None,
) -> None:
    """Write every item not yet written, enqueue the ones written now, and mark the batch
    RUNNING (or ARCHIVING, if its items all ended already)."""
    trace = batch.traceparent or child_of(None)
    items = [
        new_item(
            batch_meme_id(batch.id, seq),
            entry.template_id,
            entry.spec,
            batch.traceparent,
            tenant=batch.tenant,
            retention=retention,
            batch=(batch.id, seq),
            counted=batch.counted,
        )
        for seq, entry in enumerate(request.items)
    ]
    slots = asyncio.Semaphore(WRITE_CONCURRENCY)

    async def write(item: MemeItem) -> bool:
        async with slots:
            try:
                await memes.create(item, slot_taken=batch.counted)
            except ItemExists:
                return False  # an earlier fan-out wrote it (and enqueued it, or the sweeper will)
            return True

    written = await asyncio.gather(*(write(item) for item in items))
    fresh = [item for item, new in zip(items, written, strict=True) if new]
    try:
        unsent = await requests.publish_batch([(RequestMessage.of(item), trace) for item in fresh])
    except (BotoCoreError, ClientError) as err:
        log.warning("batch requests not enqueued (%r); the sweeper will", err)
        unsent = set(range(len(fresh)))
    if unsent:
        log.warning(
            "%d batch requests not enqueued; the sweeper will",
            len(unsent),
            extra={"batch_id": batch.id},
        )
    await batches.advance(batch.id, (BatchState.SUBMITTING,), BatchState.RUNNING)
    await batches.end_if_complete(batch.id)

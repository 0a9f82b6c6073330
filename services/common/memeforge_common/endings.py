"""The one way a meme ends: the terminal write, then its notifications.

Exactly-once effect without a transaction across DynamoDB and SQS: the conditional write
that ends a meme which asked to be notified also sets ``notify_due`` (the same UpdateItem,
so ending costs no extra call). Then its notifications are published, and ``notify_due``
is removed. A worker that dies in between leaves ``notify_due`` set: the sweeper finds it
on the ``notify-due`` index and publishes again. Every copy carries the same event id
(``models.event_id``), so a notification sent twice is still one event to a receiver.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from memeforge_common.items import MemeStore
from memeforge_common.models import (
    Batch,
    EventType,
    Failure,
    MemeResult,
    MemeState,
    NotificationMessage,
    Notify,
    ending_event,
    event_id,
    utcnow,
)
from memeforge_common.publishers import NotificationPublisher

log = logging.getLogger(__name__)


def notifications_of(
    subject_id: str,
    tenant: str,
    notify: Notify,
    event: EventType,
    occurred_at: datetime,
    data: dict[str, Any] | None = None,
) -> list[NotificationMessage]:
    """One message per channel the meme (or batch) asked for: a webhook and an email are
    retried (and succeed) independently. ``data``: the payload, for events whose subject
    the notifier does not read itself (``batch.done``)."""
    targets = {"webhook": notify.callback_url, "email": notify.email}
    return [
        NotificationMessage(
            event=event,
            event_id=event_id(subject_id, event),
            subject_id=subject_id,
            tenant=tenant,
            channel=channel,
            target=target,
            occurred_at=occurred_at,
            data=data,
        )
        for channel, target in targets.items()
        if target
    ]


@dataclass(frozen=True)
class Endings:
    store: MemeStore
    notifications: NotificationPublisher

    async def end(
        self,
        meme_id: str,
        target: MemeState,
        *,
        tenant: str,
        notify: Notify | None,
        traceparent: str,
        slot: str | None,
        result: MemeResult | None = None,
        failure: Failure | None = None,
        attempts: int | None = None,
        batch_id: str | None = None,
    ) -> bool:
        """Move the meme to DONE or FAILED (False on a lost race), counting it on its batch
        (``batch_id``) in the same write, then enqueue its notifications if it asked for any.
        ``slot``: as for ``MemeStore.transition`` (the in-flight slot the same write frees)."""
        assert target.terminal, target
        event = ending_event(target)
        wanted = notify is not None and bool(notify.channels)
        now = utcnow()
        won = await self.store.transition(
            meme_id,
            target,
            result=result,
            failure=failure,
            attempts=attempts,
            slot=slot,
            notify_due=event if wanted else None,
            at=now,
            batch_id=batch_id,
        )
        if won and notify is not None and wanted:
            await self.announce(meme_id, tenant, notify, event, now, traceparent)
        return won

    async def announce(
        self,
        meme_id: str,
        tenant: str,
        notify: Notify,
        event: EventType,
        occurred_at: datetime,
        traceparent: str,
    ) -> bool:
        """Publish the ending's notifications, then clear ``notify_due``. Failures are
        left to the sweeper (the mark stays), never raised into the ending step."""
        messages = notifications_of(meme_id, tenant, notify, event, occurred_at)
        try:
            failed = await self.notifications.publish_batch([(m, traceparent) for m in messages])
            if failed:
                log.warning(
                    "notifications not enqueued; the sweeper will", extra={"meme_id": meme_id}
                )
                return False
            await self.store.notified(meme_id)
        except Exception as err:
            log.warning(
                "notifications not confirmed (%r); the sweeper will",
                err,
                extra={"meme_id": meme_id},
            )
            return False
        return True


def batch_done_notifications(batch: Batch, occurred_at: datetime) -> list[NotificationMessage]:
    """The ``batch.done`` notifications of an archived batch (none when it asked for
    none); the payload rides in the message, as nothing per item is read to build it."""
    if batch.notify is None:
        return []
    links = {"self": f"/batches/{batch.id}", "items": f"/batches/{batch.id}/items"}
    if batch.archive is not None:
        links["archive"] = f"/batches/{batch.id}/archive"
    data = {
        "id": batch.id,
        "total": batch.total,
        "counts": {"done": batch.done, "failed": batch.failed},
        "links": links,
    }
    return notifications_of(batch.id, batch.tenant, batch.notify, "batch.done", occurred_at, data)

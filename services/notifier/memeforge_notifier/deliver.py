"""Deliver one notification: a signed webhook or an SES mail, and record the attempt.

A message is deleted (done) once its event was delivered, or refused for good (a target
the SSRF guard forbids, a tenant with no signing secret). Anything else raises, so the
queue loop backs its visibility off (``MEMEFORGE_NOTIFY_RETRY_*``: hours, not sleeps) and,
after ``MEMEFORGE_NOTIFY_MAX_ATTEMPTS`` receives, the redrive policy dead-letters it
(``DeadNotifications`` records that). Every attempt is appended to the item it is about,
where ``GET /memes/{id}`` shows it. An event already recorded as delivered on a channel
is not delivered again (a re-sent copy of the message).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from memeforge_common.batches import BatchStore
from memeforge_common.egress import (
    EgressPolicy,
    ForbiddenAddress,
    InvalidTarget,
    ResponseTooLarge,
    Unreachable,
    request,
)
from memeforge_common.endpoints import EndpointCache
from memeforge_common.items import MemeStore
from memeforge_common.limits import MAX_WEBHOOK_RESPONSE_BYTES
from memeforge_common.logs import bound
from memeforge_common.metrics import NOTIFICATION_ATTEMPTS
from memeforge_common.models import (
    Channel,
    DeliveryAttempt,
    DeliveryOutcome,
    MemeItem,
    MemeState,
    NotificationMessage,
    first_error,
    utcnow,
)
from memeforge_common.outputs import OutputStore, archive_key
from memeforge_common.queues import QueueMessage
from memeforge_common.settings import Settings
from memeforge_common.worker import Outcomes, PoisonMessage
from pydantic import ValidationError

from memeforge_notifier.mail import INLINE_IMAGE_MAX_BYTES, batch_mail, meme_mail
from memeforge_notifier.payloads import meme_data, webhook_body
from memeforge_notifier.signing import webhook_headers

if TYPE_CHECKING:
    from types_aiobotocore_ses import SESClient

log = logging.getLogger("memeforge.notifier")


class DeliveryFailed(Exception):
    """This attempt failed; the message is retried with backoff."""


def record_id(note: NotificationMessage) -> str:
    """The item a notification's attempts are recorded on: the meme, or the batch."""
    return f"batch#{note.subject_id}" if note.event == "batch.done" else note.subject_id


def _delivered(
    deliveries: Mapping[Channel, Sequence[DeliveryAttempt]], note: NotificationMessage
) -> bool:
    """A re-sent copy of an event already delivered on its channel is not sent again."""
    if any(a.outcome == "delivered" for a in deliveries.get(note.channel, ())):
        log.info("%s already delivered", note.channel)
        return True
    return False


@dataclass
class Notifier:
    store: MemeStore
    batches: BatchStore
    endpoints: EndpointCache
    outputs: OutputStore
    ses: SESClient
    settings: Settings
    policy: EgressPolicy

    async def handle(self, message: QueueMessage) -> None:
        try:
            note = NotificationMessage.model_validate_json(message.body)
        except ValidationError as err:
            raise PoisonMessage(f"invalid notification: {first_error(err)}") from err
        with bound(meme_id=note.subject_id, message_id=message.message_id):
            await self._deliver(note, message.receive_count)

    async def _deliver(self, note: NotificationMessage, attempt: int) -> None:
        if note.event == "batch.done":
            await self._deliver_batch(note, attempt)
            return
        item = await self.store.get(note.subject_id)
        if item is None or not item.state.terminal:
            log.info("notification for a meme that is gone or not ended: dropped")
            return
        if _delivered(item.deliveries, note):
            return
        if note.channel == "webhook":
            await self._webhook(note, meme_data(item), attempt)
        else:
            await self._meme_mail(note, item, attempt)

    async def _deliver_batch(self, note: NotificationMessage, attempt: int) -> None:
        """A batch.done: published once its archive is complete, before the record says
        DONE, so the record may still say ARCHIVING here."""
        batch = await self.batches.get(note.subject_id)
        if batch is None or not batch.complete:
            log.info("notification for a batch that is gone or not ended: dropped")
            return
        if _delivered(batch.deliveries, note):
            return
        if note.channel == "webhook":
            await self._webhook(note, note.data or {}, attempt)
            return
        key = archive_key(batch.id, batch.tenant)
        link = await self.outputs.presigned_url(key, self.settings.email_link_ttl_s)
        raw = batch_mail(
            batch,
            sender=self.settings.email_sender,
            recipient=note.target,
            link=link,
            expires_in_s=self.settings.email_link_ttl_s,
            event_id=note.event_id,
        )
        await self._send(note, raw, attempt)

    async def _webhook(self, note: NotificationMessage, data: dict[str, Any], attempt: int) -> None:
        endpoint = await self.endpoints.get(note.tenant)
        if endpoint is None:
            await self._record(note, attempt, "refused", error="no-signing-secret")
            return
        body = webhook_body(note, data)
        headers = webhook_headers(endpoint.secret, note.event_id, int(time.time()), body)
        try:
            response = await request(
                "POST",
                note.target,
                policy=self.policy,
                max_bytes=MAX_WEBHOOK_RESPONSE_BYTES,
                headers=headers,
                body=body,
            )
            status = response.status
        except ForbiddenAddress as err:
            log.warning("webhook target refused: %s", err)
            await self._record(note, attempt, "refused", error="forbidden-address")
            return
        except InvalidTarget:
            await self._record(note, attempt, "refused", error="invalid-target")
            return
        except ResponseTooLarge as err:
            status = err.status  # it answered; what it said beyond the cap does not matter
        except Unreachable as err:
            await self._record(note, attempt, "retrying", error="unreachable")
            raise DeliveryFailed(str(err)) from err
        if 200 <= status < 300:
            await self._record(note, attempt, "delivered", status=status)
            log.info("webhook delivered", extra={"event_id": note.event_id, "status": status})
            return
        await self._record(note, attempt, "retrying", status=status, error=f"http-{status}")
        raise DeliveryFailed(f"the receiver answered {status}")

    async def _meme_mail(self, note: NotificationMessage, item: MemeItem, attempt: int) -> None:
        link = image = None
        image_type = "image/jpeg"
        if item.state is MemeState.DONE and item.result is not None:
            link = await self.outputs.presigned_url(item.result.key, self.settings.email_link_ttl_s)
            image_key = item.result.thumbnail_key or item.result.key
            image = await self.outputs.read(image_key, INLINE_IMAGE_MAX_BYTES)
            image_type = item.result.content_type
        raw = meme_mail(
            item,
            sender=self.settings.email_sender,
            recipient=note.target,
            link=link,
            image=image,
            image_type=image_type,
            event_id=note.event_id,
        )
        await self._send(note, raw, attempt)

    async def _send(self, note: NotificationMessage, raw: bytes, attempt: int) -> None:
        try:
            await self.ses.send_raw_email(
                Source=self.settings.email_sender,
                Destinations=[note.target],
                RawMessage={"Data": raw},
            )
        except Exception as err:
            await self._record(note, attempt, "retrying", error="ses-refused")
            raise DeliveryFailed(f"SES did not send: {err!r}") from err
        await self._record(note, attempt, "delivered")
        log.info("email sent", extra={"event_id": note.event_id})

    async def _record(
        self,
        note: NotificationMessage,
        attempt: int,
        outcome: DeliveryOutcome,
        *,
        status: int | None = None,
        error: str = "",
    ) -> None:
        record = DeliveryAttempt(
            at=utcnow(), attempt=attempt, outcome=outcome, status=status, error=error
        )
        log.info(
            "%s %s: %s",
            note.channel,
            note.event,
            outcome,
            extra={"event_id": note.event_id, "status": status, "error": error},
        )
        NOTIFICATION_ATTEMPTS.labels(note.channel, outcome).inc()
        await self.store.record_delivery(record_id(note), note.channel, record)


@dataclass
class DeadNotifications:
    """Drain the notifications DLQ: record on the item that delivery was given up."""

    store: MemeStore
    settings: Settings

    async def handle_batch(self, messages: Sequence[QueueMessage]) -> Outcomes:
        outcomes = Outcomes()
        for message in messages:
            try:
                note = NotificationMessage.model_validate_json(message.body)
            except ValidationError:
                log.error("unreadable dead notification parked in the DLQ")
                continue
            attempt = DeliveryAttempt(
                at=utcnow(),
                attempt=self.settings.notify_max_attempts,
                outcome="gave_up",
                error="retries-exhausted",
            )
            NOTIFICATION_ATTEMPTS.labels(note.channel, "gave_up").inc()
            await self.store.record_delivery(record_id(note), note.channel, attempt)
            log.warning("gave up delivering %s", note.event_id, extra={"meme_id": note.subject_id})
            outcomes.done.add(message.message_id)
        return outcomes

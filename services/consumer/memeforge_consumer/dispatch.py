"""Turn a batch of request messages into render jobs (one SendMessageBatch per batch).

For each request: load the item, validate it, move PENDING → QUEUED, build the job.
A message is acknowledged (deleted) only once its effect is durable: the job is on
the render queue, or the item is terminal. A redelivered request for a QUEUED item
re-sends its job; the renderer's conditional writes make that harmless.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from memeforge_common.aws import AwsClients
from memeforge_common.items import MemeStore
from memeforge_common.logs import bound
from memeforge_common.models import (
    Failure,
    MemeItem,
    MemeState,
    RenderJob,
    RequestMessage,
    output_key,
    template_key,
)
from memeforge_common.queues import QueueMessage, send_batch
from memeforge_common.settings import Settings
from memeforge_common.templates import head_template
from pydantic import ValidationError

log = logging.getLogger("memeforge.consumer")


@dataclass(frozen=True)
class Ack:
    """Nothing more to do for this message: delete it."""


@dataclass(frozen=True)
class Retry:
    """Leave the message: it reappears after its visibility timeout (then the DLQ)."""

    why: str


@dataclass(frozen=True)
class Enqueue:
    job: RenderJob


Outcome = Ack | Retry | Enqueue


class Dispatcher:
    def __init__(self, aws: AwsClients, settings: Settings, render_queue_url: str) -> None:
        self._aws = aws
        self._settings = settings
        self._store = MemeStore(aws.dynamodb, settings.table)
        self._render_queue_url = render_queue_url

    async def handle_batch(self, messages: Sequence[QueueMessage]) -> set[str]:
        outcomes = await asyncio.gather(
            *(self._decide(m) for m in messages), return_exceptions=True
        )
        done: set[str] = set()
        to_send: list[tuple[QueueMessage, RenderJob]] = []
        for message, outcome in zip(messages, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                log.error(
                    "request failed; will retry",
                    exc_info=outcome,
                    extra={"message_id": message.message_id},
                )
            elif isinstance(outcome, Ack):
                done.add(message.message_id)
            elif isinstance(outcome, Enqueue):
                to_send.append((message, outcome.job))
            else:
                extra = {"message_id": message.message_id}
                log.warning("request left for retry: %s", outcome.why, extra=extra)
        if to_send:
            bodies = [job.model_dump_json() for _, job in to_send]
            failed = set(await send_batch(self._aws.sqs, self._render_queue_url, bodies))
            done.update(m.message_id for i, (m, _) in enumerate(to_send) if i not in failed)
        return done

    async def _decide(self, message: QueueMessage) -> Outcome:
        try:
            request = RequestMessage.model_validate_json(message.body)
        except ValidationError as err:
            # Unreadable: the redrive policy moves it to the DLQ after maxReceiveCount.
            return Retry(f"invalid request message: {err.error_count()} errors")
        with bound(meme_id=request.meme_id, message_id=message.message_id):
            item = await self._store.get(request.meme_id)
            if item is None:
                return Retry("unknown meme id")
            return await self._advance(item)

    async def _advance(self, item: MemeItem) -> Outcome:
        if item.state not in (MemeState.PENDING, MemeState.QUEUED):
            return Ack()  # duplicate request: already rendering or finished
        failure = self._invalid_spec(item)
        template = await head_template(self._aws.s3, self._settings.bucket, item.template_id)
        if template is None:
            failure = Failure(reason="template_not_found", detail=f"template {item.template_id!r}")
        if failure is not None:
            await self._store.transition(item.id, MemeState.FAILED, failure=failure)
            log.info("meme failed validation: %s", failure.reason)
            return Ack()
        assert template is not None
        if item.state is MemeState.PENDING and not await self._store.transition(
            item.id, MemeState.QUEUED
        ):
            latest = await self._store.get(item.id)
            if latest is None or latest.state is not MemeState.QUEUED:
                return Ack()  # someone else moved it on
        job = RenderJob(
            meme_id=item.id,
            template_key=template_key(item.template_id),
            template_etag=template.etag,
            spec=item.spec,
            output_key=output_key(item.id, item.spec.format),
        )
        return Enqueue(job)

    def _invalid_spec(self, item: MemeItem) -> Failure | None:
        limit = self._settings.max_caption_chars
        if not any(box.text.strip() for box in item.spec.boxes):
            return Failure(reason="empty_caption", detail="no caption text")
        for box in item.spec.boxes:
            if len(box.text) > limit:
                return Failure(reason="caption_too_long", detail=f"limit {limit} characters")
        return None

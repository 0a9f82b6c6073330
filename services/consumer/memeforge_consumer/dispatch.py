"""Turn a batch of request messages into render jobs (one SendMessageBatch per batch).

For each request: move PENDING → QUEUED, which answers with the item in the same call
(no read first), validate it, build the job; an item that fails validation goes on to
FAILED (QUEUED → FAILED) instead.
A message is acknowledged (deleted) only once its effect is durable: the job is on
the render queue, or the item is terminal. A redelivered request for a QUEUED item
re-sends its job; the renderer's conditional writes make that harmless.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from memeforge_common.endings import Endings
from memeforge_common.items import MemeStore
from memeforge_common.logs import bound
from memeforge_common.models import (
    Failure,
    MemeItem,
    MemeState,
    RenderJob,
    RequestMessage,
    first_error,
)
from memeforge_common.publishers import RenderPublisher
from memeforge_common.queues import QueueMessage
from memeforge_common.templates import TemplateInfo, TemplateLookup
from memeforge_common.tracing import child_of, from_attributes, trace_id
from memeforge_common.worker import Outcomes
from pydantic import ValidationError

log = logging.getLogger("memeforge.consumer")


@dataclass(frozen=True)
class Ack:
    """Nothing more to do for this message: delete it."""


@dataclass(frozen=True)
class Poison:
    """The message can never succeed: dead-letter it now, with the reason."""

    why: str


@dataclass(frozen=True)
class Enqueue:
    job: RenderJob
    traceparent: str


Outcome = Ack | Poison | Enqueue


class Dispatcher:
    def __init__(
        self,
        store: MemeStore,
        templates: TemplateLookup,
        renders: RenderPublisher,
        endings: Endings,
    ) -> None:
        self._store = store
        self._templates = templates
        self._renders = renders
        self._endings = endings

    async def handle_batch(self, messages: Sequence[QueueMessage]) -> Outcomes:
        decisions = await asyncio.gather(
            *(self._decide(m) for m in messages), return_exceptions=True
        )
        outcomes = Outcomes()
        to_send: list[tuple[QueueMessage, Enqueue]] = []
        for message, decision in zip(messages, decisions, strict=True):
            if isinstance(decision, BaseException):
                log.warning(
                    "request failed; will retry: %r",
                    decision,
                    extra={"message_id": message.message_id},
                )
            elif isinstance(decision, Ack):
                outcomes.done.add(message.message_id)
            elif isinstance(decision, Enqueue):
                to_send.append((message, decision))
            else:
                outcomes.poison[message.message_id] = decision.why
        if to_send:
            failed = await self._renders.publish_batch(
                [(enqueue.job, enqueue.traceparent) for _, enqueue in to_send]
            )
            outcomes.done.update(
                m.message_id for i, (m, _) in enumerate(to_send) if i not in failed
            )
        return outcomes

    async def _decide(self, message: QueueMessage) -> Outcome:
        try:
            request = RequestMessage.model_validate_json(message.body)
        except ValidationError as err:
            return Poison(f"invalid request message: {first_error(err)}")
        traceparent = child_of(from_attributes(message.attributes))
        with bound(
            meme_id=request.meme_id, message_id=message.message_id, trace_id=trace_id(traceparent)
        ):
            won, item = await self._store.transition_returning(request.meme_id, MemeState.QUEUED)
            if item is None:
                return Poison(f"unknown meme id {request.meme_id}")
            if not won and item.state is not MemeState.QUEUED:
                return Ack()  # duplicate request: already rendering or finished
            # Won: QUEUED now. Lost to a QUEUED item: a redelivered request, whose job
            # may never have been sent: send it (again; the renderer dedupes).
            return await self._job_or_failure(item, traceparent)

    async def _job_or_failure(self, item: MemeItem, traceparent: str) -> Outcome:
        failure = invalid_spec(item)
        template = None
        if failure is None:
            template = await self._templates.find(item.template_id, item.tenant)
            if template is None:
                detail = f"template {item.template_id!r}"
                failure = Failure(reason="template_not_found", detail=detail)
        if failure is not None:
            await self._endings.end(
                item.id,
                MemeState.FAILED,
                tenant=item.tenant,
                notify=item.notify,
                batch_id=item.batch_id,
                traceparent=traceparent,
                slot=item.in_flight_slot,
                failure=failure,
            )
            log.info("meme failed validation: %s", failure.reason)
            return Ack()
        assert template is not None
        return Enqueue(render_job(item, template), traceparent)

    async def resend(self, item: MemeItem) -> Failure | None:
        """Send a fresh render job for an item (the sweeper's way to recover a lost job).
        Returns the failure instead when the item can no longer be rendered."""
        invalid = invalid_spec(item)
        if invalid is not None:
            return invalid
        template = await self._templates.find(item.template_id, item.tenant)
        if template is None:
            return Failure(reason="template_not_found", detail=f"template {item.template_id!r}")
        await self._renders.publish(render_job(item, template), child_of(item.traceparent))
        return None


def invalid_spec(item: MemeItem) -> Failure | None:
    """Why an item's spec cannot be rendered; the limits themselves were checked when the
    spec was read (memeforge_common.limits), the same way the api checked them."""
    if item.spec is None:
        return Failure(reason="invalid_spec", detail="the spec breaks the current limits")
    if not item.spec.has_text:
        return Failure(reason="empty_caption", detail="no caption text")
    return None


def render_job(item: MemeItem, template: TemplateInfo) -> RenderJob:
    assert item.spec is not None, "checked by invalid_spec"
    return RenderJob(
        meme_id=item.id,
        template_key=template.key,
        template_etag=template.etag,
        spec=item.spec,
        tenant=item.tenant,
        notify=item.notify,
        batch_id=item.batch_id,
        counted=item.counted,
    )

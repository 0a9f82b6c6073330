"""Turn a batch of request messages into render jobs (one SendMessageBatch per batch).

A request carries the item's fields (``RequestMessage.meme``), so the consumer neither
reads nor writes the item: it checks the spec and the template, builds the job, and the
item stays PENDING until the renderer ends it (docs/architecture.md, "State machine").
An item that fails the checks goes PENDING → FAILED instead. A request without the
fields (an older api's) is looked up: unknown is poison, an ended item needs nothing.
A message is acknowledged (deleted) only once its effect is durable: the job is on the
render queue, or the item is terminal. A redelivered request re-sends its job; the
renderer's conditional ending makes that harmless.
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
    RenderSpec,
    RequestedMeme,
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
            if request.meme is not None:
                return await self._job_or_failure(request.meme_id, request.meme, traceparent)
            item = await self._store.get(request.meme_id)
            if item is None:
                return Poison(f"unknown meme id {request.meme_id}")
            if item.state.terminal:
                return Ack()  # duplicate request: already finished
            meme = RequestedMeme.of(item)
            if meme is None:  # its stored spec breaks today's limits
                await self._fail(item.id, item, SPEC_BREAKS_LIMITS, traceparent)
                return Ack()
            return await self._job_or_failure(item.id, meme, traceparent)

    async def _job_or_failure(self, meme_id: str, meme: RequestedMeme, traceparent: str) -> Outcome:
        checked = await self._checked(meme)
        if isinstance(checked, Failure):
            await self._fail(meme_id, meme, checked, traceparent)
            return Ack()
        return Enqueue(render_job(meme_id, meme, checked), traceparent)

    async def _checked(self, meme: RequestedMeme) -> TemplateInfo | Failure:
        """The template to render the meme on, or why it cannot be rendered."""
        failure = invalid_spec(meme.spec)
        if failure is not None:
            return failure
        template = await self._templates.find(meme.template_id, meme.tenant)
        if template is None:
            return Failure(reason="template_not_found", detail=f"template {meme.template_id!r}")
        return template

    async def _fail(
        self, meme_id: str, meme: RequestedMeme | MemeItem, failure: Failure, traceparent: str
    ) -> None:
        await self._endings.end(
            meme_id,
            MemeState.FAILED,
            tenant=meme.tenant,
            notify=meme.notify,
            batch_id=meme.batch_id,
            traceparent=traceparent,
            slot=meme.in_flight_slot,
            failure=failure,
        )
        log.info("meme failed validation: %s", failure.reason)

    async def resend(self, item: MemeItem) -> Failure | None:
        """Send a fresh render job for an item (the sweeper's way to recover a lost job).
        Returns the failure instead when the item can no longer be rendered."""
        meme = RequestedMeme.of(item)
        if meme is None:
            return SPEC_BREAKS_LIMITS
        checked = await self._checked(meme)
        if isinstance(checked, Failure):
            return checked
        await self._renders.publish(render_job(item.id, meme, checked), child_of(item.traceparent))
        return None


# An item whose stored spec breaks today's limits (it reads as None: items.py).
SPEC_BREAKS_LIMITS = Failure(reason="invalid_spec", detail="the spec breaks the current limits")


def invalid_spec(spec: RenderSpec) -> Failure | None:
    """Why a spec cannot be rendered; the limits themselves were checked when the spec
    was read (memeforge_common.limits), the same way the api checked them."""
    if not spec.has_text:
        return Failure(reason="empty_caption", detail="no caption text")
    return None


def render_job(meme_id: str, meme: RequestedMeme, template: TemplateInfo) -> RenderJob:
    return RenderJob(
        meme_id=meme_id,
        template_key=template.key,
        template_etag=template.etag,
        spec=meme.spec,
        tenant=meme.tenant,
        notify=meme.notify,
        batch_id=meme.batch_id,
        counted=meme.counted,
    )

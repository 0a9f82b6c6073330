"""One publisher per queue: the only code that puts a message model on an SQS queue.

Every message carries its W3C trace context as the ``traceparent`` attribute, so a
message re-sent by the sweeper continues the trace of the request that started it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Generic, TypeVar

from pydantic import BaseModel

from memeforge_common.models import NotificationMessage, RenderJob, RequestMessage
from memeforge_common.queues import send_batch
from memeforge_common.tracing import trace_attributes

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

M = TypeVar("M", bound=BaseModel)


class PublishFailed(Exception):
    """SQS refused the message (the caller retries, or leaves it to the sweeper)."""


class Publisher(Generic[M]):
    def __init__(self, sqs: SQSClient, queue_url: str) -> None:
        self._sqs = sqs
        self._url = queue_url

    async def publish(self, message: M, traceparent: str) -> None:
        if await self.publish_batch([(message, traceparent)]):
            raise PublishFailed(f"{type(message).__name__} was not sent")

    async def publish_batch(self, messages: Sequence[tuple[M, str]]) -> set[int]:
        """Send (message, traceparent) pairs in batches; the indexes that failed."""
        bodies = [message.model_dump_json() for message, _ in messages]
        attributes = [trace_attributes(traceparent) for _, traceparent in messages]
        return set(await send_batch(self._sqs, self._url, bodies, attributes))


RequestPublisher = Publisher[RequestMessage]
"""api and sweeper → consumer."""
RenderPublisher = Publisher[RenderJob]
"""consumer (dispatch and sweeper) → renderer."""
NotificationPublisher = Publisher[NotificationMessage]
"""whatever ends a meme (renderer, dispatcher, DLQ drain, sweeper) or a batch → notifier."""

"""One publisher per queue: the only code that puts a message model on an SQS queue.

Every message carries its W3C trace context as the ``traceparent`` attribute, so a
message re-sent by the sweeper continues the trace of the request that started it.

``publish`` (one message, e.g. one per POST /memes) coalesces: at most one
SendMessageBatch of ``publish`` calls is in flight per publisher, and the messages
published meanwhile go, up to 10, in the next one. A message published while nothing is
in flight is sent at once, so light load adds no latency; under load (the call just sent
carried several messages) the next call waits up to ``gather_s`` for more, so each call
carries more of them. Each caller learns the fate of its own message.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel

from memeforge_common.models import NotificationMessage, RenderJob, RequestMessage
from memeforge_common.queues import SQS_BATCH_MAX, send_batch
from memeforge_common.tracing import trace_attributes

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

M = TypeVar("M", bound=BaseModel)


class PublishFailed(Exception):
    """SQS refused the message (the caller retries, or leaves it to the sweeper)."""


@dataclass(frozen=True)
class _Waiting:
    body: str
    attributes: Mapping[str, Any]
    sent: asyncio.Future[None]


class Publisher(Generic[M]):
    def __init__(self, sqs: SQSClient, queue_url: str, *, gather_s: float = 0.0) -> None:
        self._sqs = sqs
        self._url = queue_url
        self._gather_s = gather_s
        self._waiting: list[_Waiting] = []
        self._full = asyncio.Event()  # a whole batch is waiting
        self._sender: asyncio.Task[None] | None = None

    async def publish(self, message: M, traceparent: str) -> None:
        """Send one message, in the next batch (PublishFailed when SQS refused this
        entry; an error of the whole call is raised to every message it carried)."""
        sent: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        sent.add_done_callback(_retrieved)
        self._waiting.append(
            _Waiting(message.model_dump_json(), trace_attributes(traceparent), sent)
        )
        if len(self._waiting) >= SQS_BATCH_MAX:
            self._full.set()
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_waiting())
        # Shielded: a caller that goes away (a client disconnect) does not take the
        # message out of a batch that may be on the wire already.
        await asyncio.shield(sent)

    async def _send_waiting(self) -> None:
        """Send what is waiting, 10 a call, one call at a time, until nothing is; after
        a call of several messages, the next gathers for up to ``gather_s``."""
        try:
            loaded = False
            while self._waiting:
                if loaded and len(self._waiting) < SQS_BATCH_MAX and self._gather_s > 0:
                    self._full.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._full.wait(), timeout=self._gather_s)
                batch = self._waiting[:SQS_BATCH_MAX]
                del self._waiting[:SQS_BATCH_MAX]
                loaded = len(batch) > 1
                await self._send(batch)
        except BaseException:
            stopped = PublishFailed("the publisher stopped before sending the message")
            for waiting in self._waiting:
                _settle(waiting.sent, stopped)
            self._waiting.clear()
            raise
        finally:
            self._sender = None

    async def _send(self, batch: Sequence[_Waiting]) -> None:
        try:
            failed = set(
                await send_batch(
                    self._sqs,
                    self._url,
                    [w.body for w in batch],
                    [w.attributes for w in batch],
                )
            )
        except Exception as err:
            for waiting in batch:
                _settle(waiting.sent, err)
            return
        except BaseException:  # cancelled (shutdown): no caller is left waiting
            for waiting in batch:
                _settle(waiting.sent, PublishFailed("the publisher stopped while sending"))
            raise
        for index, waiting in enumerate(batch):
            refused = PublishFailed("SQS refused the message") if index in failed else None
            _settle(waiting.sent, refused)

    async def publish_batch(self, messages: Sequence[tuple[M, str]]) -> set[int]:
        """Send (message, traceparent) pairs in batches; the indexes that failed."""
        bodies = [message.model_dump_json() for message, _ in messages]
        attributes = [trace_attributes(traceparent) for _, traceparent in messages]
        return set(await send_batch(self._sqs, self._url, bodies, attributes))


def _retrieved(sent: asyncio.Future[None]) -> None:
    """Mark an error as seen: a caller that went away (shield) never awaits it."""
    if not sent.cancelled():
        sent.exception()


def _settle(sent: asyncio.Future[None], error: BaseException | None) -> None:
    if sent.done():
        return
    if error is None:
        sent.set_result(None)
    else:
        sent.set_exception(error)


RequestPublisher = Publisher[RequestMessage]
"""api and sweeper → consumer."""
RenderPublisher = Publisher[RenderJob]
"""consumer (dispatch and sweeper) → renderer."""
NotificationPublisher = Publisher[NotificationMessage]
"""whatever ends a meme (renderer, dispatcher, DLQ drain, sweeper) or a batch → notifier."""

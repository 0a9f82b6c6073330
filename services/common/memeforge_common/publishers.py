"""One publisher per queue: the only code that puts a message model on an SQS queue.

Every message carries its W3C trace context as the ``traceparent`` attribute, so a
message re-sent by the sweeper continues the trace of the request that started it.

``publish`` (one message, e.g. one per POST /memes) coalesces: at most one
SendMessageBatch of ``publish`` calls is in flight per publisher, and the messages
published meanwhile go, up to 10, in the next one. Before a call, the publisher waits
for more as ``gathering.Gathering`` says: while at least two messages announced by
``coming()`` (POSTs being handled) are still on their way, until 10 wait, at most its
budget after the oldest was published; otherwise (a light load) not at all. Each caller
learns the fate of its own message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel

from memeforge_common.gathering import Gathering
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
    at: float  # when published (the gathering's clock)


class Coming:
    """A message announced before it is published (``Publisher.coming``)."""

    def __init__(self, publisher: Publisher[Any]) -> None:
        self._publisher = publisher
        self.pending = True  # not published yet

    def __enter__(self) -> Coming:
        return self

    def __exit__(self, *_: object) -> None:
        if self.pending:  # the block ended without publishing it
            self._publisher._arrived(self, published=False)


class Publisher(Generic[M]):
    def __init__(
        self, sqs: SQSClient, queue_url: str, *, gathering: Gathering | None = None
    ) -> None:
        self._sqs = sqs
        self._url = queue_url
        self._gathering = gathering or Gathering(0.0)  # none: never waits
        self._waiting: list[_Waiting] = []
        self._changed = asyncio.Event()  # a message waits, or one coming will not
        self._sender: asyncio.Task[None] | None = None
        self._coming = 0  # announced messages not published yet

    def coming(self) -> Coming:
        """Announce a message that will most likely be published soon, with this
        handle, within a ``with`` block (a POST /memes being handled): a call about to
        go out may wait for it (``Gathering``)."""
        self._coming += 1
        return Coming(self)

    def _arrived(self, coming: Coming, *, published: bool) -> None:
        coming.pending = False
        self._coming -= 1
        if not published:
            self._changed.set()

    async def publish(self, message: M, traceparent: str, coming: Coming | None = None) -> None:
        """Send one message, in the next batch (PublishFailed when SQS refused this
        entry; an error of the whole call is raised to every message it carried).
        ``coming``: the handle it was announced with, if it was."""
        sent: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        sent.add_done_callback(_retrieved)
        self._waiting.append(
            _Waiting(
                message.model_dump_json(),
                trace_attributes(traceparent),
                sent,
                self._gathering.now(),
            )
        )
        if coming is not None and coming.pending:
            self._arrived(coming, published=True)
        self._changed.set()
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_waiting())
        # Shielded: a caller that goes away (a client disconnect) does not take the
        # message out of a batch that may be on the wire already.
        await asyncio.shield(sent)

    async def _send_waiting(self) -> None:
        """Send what is waiting, 10 a call, one call at a time, until nothing is; each
        call first gathers as long as ``Gathering`` says."""
        try:
            while self._waiting:
                await self._gather()
                batch = self._waiting[:SQS_BATCH_MAX]
                del self._waiting[:SQS_BATCH_MAX]
                await self._send(batch)
        except BaseException:
            stopped = PublishFailed("the publisher stopped before sending the message")
            for waiting in self._waiting:
                _settle(waiting.sent, stopped)
            self._waiting.clear()
            raise
        finally:
            self._sender = None

    async def _gather(self) -> None:
        """Wait while ``Gathering`` says to, asking again whenever a message comes (or
        one announced by ``coming()`` will not)."""
        while True:
            wait_s = self._gathering.wait_s(
                len(self._waiting), SQS_BATCH_MAX, self._waiting[0].at, coming=self._coming
            )
            if wait_s <= 0:
                return
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), timeout=wait_s)
            except TimeoutError:
                return

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

"""One reusable SQS batch consumer loop, used by the consumer and the renderer.

- long polling, batches of up to 10, never more messages in flight than ``concurrency``;
- the handler gets a whole batch and says which messages succeeded: only those are
  deleted (partial batch failure); the rest reappear after their visibility timeout
  and eventually reach the DLQ through the redrive policy;
- receive errors (AWS unreachable, throttling) back off and retry, never crash;
- ``stop()`` (SIGTERM) stops receiving, lets in-flight work finish within the grace
  period, and releases whatever is still unfinished (visibility 0) before returning.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from memeforge_common.queues import (
    SQS_BATCH_MAX,
    QueueMessage,
    delete_batch,
    queue_url,
    release_batch,
)

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

log = logging.getLogger(__name__)

# Returns the message ids that were handled for good (to delete).
BatchHandler = Callable[[Sequence[QueueMessage]], Awaitable[set[str]]]
MessageHandler = Callable[[QueueMessage], Awaitable[None]]


def per_message(handler: MessageHandler) -> BatchHandler:
    """Adapt a one-message handler: run a batch concurrently; success = no exception."""

    async def handle_batch(messages: Sequence[QueueMessage]) -> set[str]:
        results = await asyncio.gather(*(handler(m) for m in messages), return_exceptions=True)
        done = set()
        for message, result in zip(messages, results, strict=True):
            if isinstance(result, BaseException):
                if isinstance(result, asyncio.CancelledError):
                    continue
                log.error(
                    "message handler failed; message will be retried",
                    exc_info=result,
                    extra={"message_id": message.message_id},
                )
            else:
                done.add(message.message_id)
        return done

    return handle_batch


class QueueWorker:
    def __init__(
        self,
        sqs: SQSClient,
        queue_url: str,
        handler: BatchHandler,
        *,
        concurrency: int,
        wait_s: int = 20,
        grace_s: float = 25.0,
        name: str = "worker",
        heartbeat_file: str | None = None,
    ) -> None:
        self._sqs = sqs
        self._url = queue_url
        self._handler = handler
        self._concurrency = concurrency
        self._wait_s = wait_s
        self._grace_s = grace_s
        self._name = name
        self._in_flight: dict[str, QueueMessage] = {}
        self._capacity = asyncio.Condition()
        self._stopping = asyncio.Event()
        self._batches: set[asyncio.Task[None]] = set()
        self._heartbeat_file = Path(heartbeat_file) if heartbeat_file else None
        self.last_heartbeat = time.monotonic()
        self.processed = 0

    def stop(self) -> None:
        self._stopping.set()

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)

    async def run(self) -> None:
        log.info("worker started", extra={"queue": self._url, "concurrency": self._concurrency})
        backoff = 0.5
        while not self._stopping.is_set():
            self._beat()
            free = await self._wait_for_capacity()
            if free == 0:
                break
            try:
                messages = await self._receive(min(free, SQS_BATCH_MAX))
            except Exception:
                delay = backoff * (0.5 + random.random())
                log.warning("receive failed; backing off %.1fs", delay, exc_info=True)
                await self._sleep_unless_stopping(delay)
                backoff = min(backoff * 2, 20.0)
                continue
            backoff = 0.5
            if messages:
                self._start_batch(messages)
        await self._drain()
        log.info("worker stopped", extra={"processed": self.processed})

    def _beat(self) -> None:
        """Liveness means the loop turns, never that AWS answers (a probe must not
        restart every worker during an AWS outage)."""
        self.last_heartbeat = time.monotonic()
        if self._heartbeat_file is not None:
            with contextlib.suppress(OSError):
                self._heartbeat_file.touch()

    async def _wait_for_capacity(self) -> int:
        async with self._capacity:
            while len(self._in_flight) >= self._concurrency and not self._stopping.is_set():
                waiter = asyncio.ensure_future(self._capacity.wait())
                stopper = asyncio.ensure_future(self._stopping.wait())
                await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                stopper.cancel()
                if not waiter.done():
                    waiter.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await waiter
            if self._stopping.is_set():
                return 0
            return self._concurrency - len(self._in_flight)

    async def _receive(self, count: int) -> list[QueueMessage]:
        receive = asyncio.ensure_future(
            self._sqs.receive_message(
                QueueUrl=self._url,
                MaxNumberOfMessages=count,
                WaitTimeSeconds=self._wait_s,
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
            )
        )
        stopper = asyncio.ensure_future(self._stopping.wait())
        await asyncio.wait({receive, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if not receive.done():
            # Stop interrupts the long poll at once; if SQS had already picked messages
            # for this call they reappear after their visibility timeout: delayed, not lost.
            receive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await receive
            return []
        response = receive.result()
        return [QueueMessage.from_sqs(raw) for raw in response.get("Messages", [])]

    def _start_batch(self, messages: list[QueueMessage]) -> None:
        for message in messages:
            self._in_flight[message.message_id] = message
        task = asyncio.create_task(self._run_batch(messages))
        self._batches.add(task)
        task.add_done_callback(self._batches.discard)

    async def _run_batch(self, messages: list[QueueMessage]) -> None:
        try:
            done = await self._handler(messages)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("batch handler failed; %d messages will be retried", len(messages))
            done = set()
        try:
            succeeded = [m for m in messages if m.message_id in done]
            if succeeded:
                await delete_batch(self._sqs, self._url, succeeded)
                self.processed += len(succeeded)
        except Exception:
            # The effect is durable and idempotent: a redelivery is harmless.
            log.warning("delete failed; messages may be redelivered", exc_info=True)
        finally:
            async with self._capacity:
                for message in messages:
                    self._in_flight.pop(message.message_id, None)
                self._capacity.notify_all()

    async def _drain(self) -> None:
        if self._batches:
            log.info("draining %d in-flight messages", len(self._in_flight))
            _, pending = await asyncio.wait(set(self._batches), timeout=self._grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        leftover = list(self._in_flight.values())
        if leftover:
            log.warning("releasing %d unfinished messages", len(leftover))
            with contextlib.suppress(Exception):
                await release_batch(self._sqs, self._url, leftover)
            self._in_flight.clear()

    async def _sleep_unless_stopping(self, delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=delay)


async def serve_queue(
    sqs: SQSClient,
    queue_name: str,
    handler: BatchHandler,
    *,
    concurrency: int,
    wait_s: int,
    grace_s: float,
    name: str,
    heartbeat_file: str | None = None,
) -> QueueWorker:
    """Run a QueueWorker on the named queue until SIGTERM/SIGINT; returns it when drained."""
    url = await queue_url(sqs, queue_name)
    worker = QueueWorker(
        sqs,
        url,
        handler,
        concurrency=concurrency,
        wait_s=wait_s,
        grace_s=grace_s,
        name=name,
        heartbeat_file=heartbeat_file,
    )
    worker.install_signal_handlers()
    await worker.run()
    return worker

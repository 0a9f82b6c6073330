"""One reusable SQS batch consumer loop, used by the consumer and the renderer.

- long polling, batches of up to 10, never more messages in flight than ``concurrency``;
- the handler gets a whole batch and sorts it into ``done`` (deleted), ``poison``
  (copied to the DLQ with the reason, then deleted) and the rest, which are retried:
  their visibility is set to an exponential backoff, and after ``maxReceiveCount``
  receives the redrive policy moves them to the DLQ;
- messages held longer than a third of the visibility timeout get it extended
  (a heartbeat), so a long render is not handed to a second worker, while a worker
  that dies simply stops extending and its messages reappear;
- receive errors (AWS unreachable, throttling) back off and retry, never crash;
- ``stop()`` (SIGTERM) stops receiving (a long poll under way completes, at most
  ``wait_s``, and what it brings is released), lets in-flight work finish within the
  grace period, and releases whatever is still unfinished (visibility 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from memeforge_common.backoff import Backoff
from memeforge_common.metrics import BATCH_SECONDS, IN_FLIGHT, MESSAGES, RECEIVE_ERRORS
from memeforge_common.queues import (
    SQS_BATCH_MAX,
    QueueMessage,
    dead_letter,
    delete_batch,
    queue_url,
    release_batch,
    set_visibility,
)
from memeforge_common.settings import Settings

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

log = logging.getLogger(__name__)


class PoisonMessage(Exception):
    """The message can never succeed (unreadable, unknown version, unknown meme):
    dead-letter it now instead of retrying it maxReceiveCount times."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Outcomes:
    """What a batch handler did with each message; any message in neither set is retried."""

    done: set[str] = field(default_factory=set)
    poison: dict[str, str] = field(default_factory=dict)  # message id → reason


BatchHandler = Callable[[Sequence[QueueMessage]], Awaitable[Outcomes]]
MessageHandler = Callable[[QueueMessage], Awaitable[None]]


def per_message(handler: MessageHandler) -> BatchHandler:
    """Adapt a one-message handler: run a batch concurrently; success = no exception,
    PoisonMessage = dead-letter, any other exception = retry with backoff."""

    async def handle_batch(messages: Sequence[QueueMessage]) -> Outcomes:
        results = await asyncio.gather(*(handler(m) for m in messages), return_exceptions=True)
        outcomes = Outcomes()
        for message, result in zip(messages, results, strict=True):
            if isinstance(result, PoisonMessage):
                outcomes.poison[message.message_id] = result.reason
            elif isinstance(result, asyncio.CancelledError):
                continue
            elif isinstance(result, BaseException):
                log.warning(
                    "message handler failed; will retry: %r",
                    result,
                    exc_info=not isinstance(result, Exception) or log.isEnabledFor(logging.DEBUG),
                    extra={"message_id": message.message_id},
                )
            else:
                outcomes.done.add(message.message_id)
        return outcomes

    return handle_batch


# After a failed receive (AWS unreachable, throttling): 0.5 s doubling up to 20 s.
RECEIVE_BACKOFF = Backoff(base_s=0.5, max_s=20.0, jitter=0.5)
MAX_VISIBILITY_S = 43200  # SQS's limit


def visibility_delay(backoff: Backoff, receive_count: int) -> int:
    """Seconds until a failed message is retried: its receive count's backoff."""
    return int(max(0, min(MAX_VISIBILITY_S, round(backoff.delay(receive_count)))))


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
        visibility_timeout_s: int = 60,
        backoff: Backoff | None = None,
        dlq_url: str | None = None,
    ) -> None:
        self._sqs = sqs
        self._url = queue_url
        self._handler = handler
        self._concurrency = concurrency
        self._wait_s = wait_s
        self._grace_s = grace_s
        self._name = name
        self._heartbeat_file = Path(heartbeat_file) if heartbeat_file else None
        self._visibility_s = visibility_timeout_s
        self._backoff = backoff or Backoff()
        self._dlq_url = dlq_url
        self._in_flight: dict[str, QueueMessage] = {}
        self._slot_freed = asyncio.Event()
        self._stopping = asyncio.Event()
        self._batches: set[asyncio.Task[None]] = set()
        self.processed = 0

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        log.info(
            "worker started",
            extra={"worker": self._name, "queue": self._url, "concurrency": self._concurrency},
        )
        keeper = asyncio.create_task(self._keep_visible())
        failures = 0
        try:
            while not self._stopping.is_set():
                self._beat()
                free = await self._wait_for_capacity()
                if free == 0:
                    break
                try:
                    messages = await self._receive(min(free, SQS_BATCH_MAX))
                except Exception as err:
                    RECEIVE_ERRORS.labels(self._name).inc()
                    failures += 1
                    delay = RECEIVE_BACKOFF.delay(failures)
                    log.warning("receive failed (%r); backing off %.1fs", err, delay)
                    await self._sleep_unless_stopping(delay)
                    continue
                failures = 0
                if messages:
                    self._start_batch(messages)
            await self._drain()
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
        log.info("worker stopped", extra={"worker": self._name, "processed": self.processed})

    def _beat(self) -> None:
        """Liveness means the loop turns, never that AWS answers (a probe must not
        restart every worker during an AWS outage)."""
        if self._heartbeat_file is not None:
            with contextlib.suppress(OSError):
                self._heartbeat_file.touch()

    async def _wait_for_capacity(self) -> int:
        """Free slots (up to ``concurrency`` messages in flight); 0 once stopping."""
        while len(self._in_flight) >= self._concurrency and not self._stopping.is_set():
            self._slot_freed.clear()
            waiters = {
                asyncio.ensure_future(self._slot_freed.wait()),
                asyncio.ensure_future(self._stopping.wait()),
            }
            _, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for waiter in pending:
                waiter.cancel()
        if self._stopping.is_set():
            return 0
        return self._concurrency - len(self._in_flight)

    async def _receive(self, count: int) -> list[QueueMessage]:
        response = await self._sqs.receive_message(
            QueueUrl=self._url,
            MaxNumberOfMessages=count,
            WaitTimeSeconds=self._wait_s,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
            MessageAttributeNames=["All"],
        )
        messages = [QueueMessage.from_sqs(raw) for raw in response.get("Messages", [])]
        if messages and self._stopping.is_set():
            # Stop came during the long poll. The poll is never abandoned: SQS would still
            # hand its messages to the closed call and hide them for a whole visibility
            # timeout. Hand them straight back instead.
            with contextlib.suppress(Exception):
                await release_batch(self._sqs, self._url, messages)
            return []
        return messages

    def _start_batch(self, messages: list[QueueMessage]) -> None:
        for message in messages:
            self._in_flight[message.message_id] = message
        IN_FLIGHT.labels(self._name).set(len(self._in_flight))
        task = asyncio.create_task(self._run_batch(messages))
        self._batches.add(task)
        task.add_done_callback(self._batches.discard)

    async def _run_batch(self, messages: list[QueueMessage]) -> None:
        started = time.monotonic()
        try:
            outcomes = await self._handler(messages)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("batch handler failed; %d messages will be retried", len(messages))
            outcomes = Outcomes()
        BATCH_SECONDS.labels(self._name).observe(time.monotonic() - started)
        try:
            await self._settle(messages, outcomes)
        finally:
            for message in messages:
                self._in_flight.pop(message.message_id, None)
            IN_FLIGHT.labels(self._name).set(len(self._in_flight))
            self._slot_freed.set()

    async def _settle(self, messages: list[QueueMessage], outcomes: Outcomes) -> None:
        """Delete what is done, dead-letter poison, back off the rest. Failures here are
        harmless: an undeleted message is redelivered and its effect is idempotent."""
        done = [m for m in messages if m.message_id in outcomes.done]
        poison = [
            (m, outcomes.poison[m.message_id]) for m in messages if m.message_id in outcomes.poison
        ]
        retry = [
            m
            for m in messages
            if m.message_id not in outcomes.done and m.message_id not in outcomes.poison
        ]
        if poison and self._dlq_url:
            for message, reason in poison:
                log.error(
                    "dead-lettering poison message: %s",
                    reason,
                    extra={"message_id": message.message_id},
                )
            try:
                done += await dead_letter(self._sqs, self._dlq_url, poison)
            except Exception:
                log.warning("could not dead-letter poison messages", exc_info=True)
        elif poison:
            retry += [m for m, _ in poison]  # no DLQ known: let the redrive policy do it
        MESSAGES.labels(self._name, "done").inc(len(done))
        MESSAGES.labels(self._name, "poison").inc(len(poison))
        MESSAGES.labels(self._name, "retry").inc(len(retry))
        try:
            if done:
                await delete_batch(self._sqs, self._url, done)
                self.processed += len(done)
            if retry:
                delays = [(m, visibility_delay(self._backoff, m.receive_count)) for m in retry]
                await set_visibility(self._sqs, self._url, delays)
        except Exception as err:
            log.warning("settling a batch failed (%r); messages may be redelivered", err)

    async def _keep_visible(self) -> None:
        """Extend the visibility of messages still being worked on (the heartbeat)."""
        # Checked every third of the timeout; anything held for half a period gets a new
        # full timeout, so even a message received just after a check is extended at
        # age 1.5 periods at the latest, half the timeout before it would reappear.
        period = max(1.0, self._visibility_s / 3)
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            held = [m for m in self._in_flight.values() if now - m.received_at >= period / 2]
            if not held:
                continue
            try:
                await set_visibility(self._sqs, self._url, [(m, self._visibility_s) for m in held])
            except Exception as err:
                log.warning("visibility heartbeat failed: %r", err)

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


async def make_worker(
    sqs: SQSClient,
    settings: Settings,
    queue_name: str,
    handler: BatchHandler,
    *,
    name: str,
    dead_letter_queue: str | None = None,
    backoff: Backoff | None = None,
    concurrency: int | None = None,
) -> QueueWorker:
    """A QueueWorker on the named queue, configured from settings."""
    url = await queue_url(sqs, queue_name)
    dlq_url = await queue_url(sqs, dead_letter_queue) if dead_letter_queue else None
    return QueueWorker(
        sqs,
        url,
        handler,
        concurrency=concurrency or settings.worker_concurrency,
        wait_s=settings.receive_wait_s,
        grace_s=settings.shutdown_grace_s,
        name=name,
        heartbeat_file=settings.heartbeat_file,
        visibility_timeout_s=settings.visibility_timeout_s,
        backoff=backoff or Backoff(settings.retry_base_s, settings.retry_max_s),
        dlq_url=dlq_url,
    )


async def run_until_signalled(
    workers: Sequence[QueueWorker],
    background: Sequence[Callable[[asyncio.Event], Awaitable[None]]] = (),
) -> None:
    """Run workers (and background loops that watch a stop event) until SIGTERM/SIGINT,
    then stop them all together and wait for every drain."""
    stopping = asyncio.Event()

    def stop() -> None:
        stopping.set()
        for worker in workers:
            worker.stop()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    tasks = [asyncio.create_task(w.run()) for w in workers]
    tasks += [asyncio.ensure_future(job(stopping)) for job in background]
    try:
        await asyncio.gather(*tasks)
    finally:
        stop()
        await asyncio.gather(*tasks, return_exceptions=True)

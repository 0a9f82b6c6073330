"""One reusable SQS batch consumer loop, used by the consumer and the renderer.

- long polling, batches of up to 10, never more messages in flight than ``concurrency``;
- batches grow with load, at no cost to a light one (issue #12: SQS calls per meme):
  after a receive that brought several messages but fewer than asked (messages arrive
  faster than one receive a round trip), the next waits ``gather_s`` to bring more; a
  receive asks for at most half the concurrency (up to 10), and after one that brought
  all it asked (a backlog) the next waits until that many slots are free, so a busy
  worker receives two alternating full batches, not one batch per freed slot, and never
  runs dry while it waits; done messages are deleted together (Deleter, off the
  message's path);
- the handler gets a whole batch and sorts it into ``done`` (deleted), ``poison``
  (copied to the DLQ with the reason, then deleted) and the rest, which are retried:
  their visibility is set to an exponential backoff, and after ``maxReceiveCount``
  receives the redrive policy moves them to the DLQ;
- each batch has a deadline (``job_deadline_s``, arq-style): past it the handler's task
  is cancelled (the hook for whoever runs the work elsewhere, e.g. a process pool), its
  messages are retried with backoff, and the visibility heartbeat stops extending them;
- messages held longer than a third of the visibility timeout get it extended
  (a heartbeat), so a long render is not handed to a second worker, while a worker
  that dies simply stops extending and its messages reappear;
- the loop records each turn, and every few seconds while it waits (for a free slot, a
  long poll, a backoff), in the liveness heartbeat (healthcheck.py), under its own name;
- receive errors (AWS unreachable, throttling) back off and retry, never crash;
- ``stop()`` (SIGTERM) starts a shutdown that ends ``grace_s`` after it, whatever AWS
  does: receiving stops (a long poll under way may complete, and what it brings is
  handed back; one still open near the end is abandoned), in-flight work may finish
  until a few seconds before the end, and whatever is unfinished is released
  (visibility 0) in those last seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Collection, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import uvloop

from memeforge_common.backoff import Backoff
from memeforge_common.healthcheck import Heartbeat, process_heartbeat
from memeforge_common.logs import configure_logging
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
from memeforge_common.settings import Settings, get_settings
from memeforge_common.timing import RELEASE_RESERVE_S

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


class Deleter:
    """Deletes settled messages in batches off the message's path: a message waits up to
    ``gather_s`` for others (10 a call, one call in flight), so a busy worker pays about
    one DeleteMessageBatch per 10 messages. Its effect is durable already, so nothing
    waits on the delete; a worker that dies first gets the message redelivered, which
    the effects' conditions make harmless. ``close()`` deletes what waits at once."""

    def __init__(self, sqs: SQSClient, url: str, gather_s: float) -> None:
        self._sqs = sqs
        self._url = url
        self._gather_s = gather_s
        self._waiting: list[QueueMessage] = []
        self._enough = asyncio.Event()  # a full batch waits, or closing
        self._sender: asyncio.Task[None] | None = None

    def schedule(self, messages: Sequence[QueueMessage]) -> None:
        self._waiting += messages
        if len(self._waiting) >= SQS_BATCH_MAX:
            self._enough.set()
        if self._sender is None and self._waiting:
            self._sender = asyncio.create_task(self._send_waiting())

    async def close(self) -> None:
        self._gather_s = 0.0
        self._enough.set()
        if self._sender is not None:
            await asyncio.shield(self._sender)

    async def _send_waiting(self) -> None:
        try:
            while self._waiting:
                if len(self._waiting) < SQS_BATCH_MAX and self._gather_s > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._enough.wait(), timeout=self._gather_s)
                batch = self._waiting[:SQS_BATCH_MAX]
                del self._waiting[:SQS_BATCH_MAX]
                if len(self._waiting) < SQS_BATCH_MAX and self._gather_s > 0:
                    self._enough.clear()
                try:
                    await delete_batch(self._sqs, self._url, batch)
                except Exception as err:
                    log.warning("deleting %d messages failed (%r); redelivered", len(batch), err)
        finally:
            self._sender = None


# After a failed receive (AWS unreachable, throttling): 0.5 s doubling up to 20 s.
RECEIVE_BACKOFF = Backoff(base_s=0.5, max_s=20.0, jitter=0.5)
MAX_VISIBILITY_S = 43200  # SQS's limit


def visibility_delay(backoff: Backoff, receive_count: int) -> int:
    """Seconds until a failed message is retried: its receive count's backoff."""
    return int(max(0, min(MAX_VISIBILITY_S, round(backoff.delay(receive_count)))))


# How long a done message waits to be deleted with others (Deleter).
DELETE_GATHER_S = 1.0
# While waiting (a free slot, a long poll, a backoff), the loop still beats this often.
BEAT_EVERY_S = 5.0
# How long an abandoned handler gets to unwind after its cancellation.
ABANDON_WAIT_S = 5.0


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
        job_deadline_s: float = 180.0,
        name: str = "worker",
        heartbeat: Heartbeat | None = None,
        visibility_timeout_s: int = 60,
        backoff: Backoff | None = None,
        dlq_url: str | None = None,
        gather_s: float = 0.0,
        delete_gather_s: float = DELETE_GATHER_S,
    ) -> None:
        self._sqs = sqs
        self._url = queue_url
        self._handler = handler
        self._concurrency = concurrency
        self._wait_s = wait_s
        self._grace_s = grace_s
        self._deadline_s = job_deadline_s
        self._name = name
        self._heartbeat = heartbeat or Heartbeat(None)
        self._visibility_s = visibility_timeout_s
        self._backoff = backoff or Backoff()
        self._dlq_url = dlq_url
        self._gather_s = gather_s
        # The most a receive asks for; after one that brought all it asked (a backlog),
        # the next waits for this many free slots.
        self._fill = min(SQS_BATCH_MAX, max(1, concurrency // 2))
        self._deleter = Deleter(sqs, queue_url, delete_gather_s)
        self._in_flight: dict[str, QueueMessage] = {}
        self._slot_freed = asyncio.Event()
        self._stopping = asyncio.Event()
        self._stop_at = 0.0
        self._batches: set[asyncio.Task[None]] = set()
        self._abandoned: set[asyncio.Task[Outcomes]] = set()
        self.processed = 0

    @property
    def name(self) -> str:
        return self._name

    @property
    def grace_s(self) -> float:
        return self._grace_s

    def stop(self) -> None:
        if not self._stopping.is_set():
            self._stop_at = time.monotonic()
            self._stopping.set()
            # The shutdown is bounded by its own budget: not a loop to watch any more.
            self._heartbeat.forget(self._name)

    def _beat(self) -> None:
        if not self._stopping.is_set():
            self._heartbeat.beat(self._name)

    def _shutdown_left(self, reserve: float = 0.0) -> float:
        """Seconds left of the shutdown budget (counted from stop()), minus ``reserve``."""
        return max(0.0, self._stop_at + self._grace_s - reserve - time.monotonic())

    async def run(self) -> None:
        log.info(
            "worker started",
            extra={"worker": self._name, "queue": self._url, "concurrency": self._concurrency},
        )
        keeper = asyncio.create_task(self._keep_visible())
        failures = 0
        wanted = 1  # free slots to wait for before the next receive
        try:
            while not self._stopping.is_set():
                self._beat()
                free = await self._wait_for_capacity(wanted)
                if free == 0:
                    break
                asked = min(free, self._fill)
                try:
                    messages = await self._receive(asked)
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
                wanted = self._fill if len(messages) == asked else 1
                if 1 < len(messages) < asked and self._gather_s > 0:
                    await self._sleep_unless_stopping(self._gather_s)
            await self._drain()
        finally:
            self._heartbeat.forget(self._name)
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
        log.info("worker stopped", extra={"worker": self._name, "processed": self.processed})

    async def _wait_for_capacity(self, wanted: int = 1) -> int:
        """Free slots, once at least ``wanted`` are (up to ``concurrency`` messages in
        flight); 0 once stopping. A full worker is busy, not stuck (the job deadline
        bounds how long)."""
        while self._concurrency - len(self._in_flight) < wanted and not self._stopping.is_set():
            self._slot_freed.clear()
            waiters = {
                asyncio.ensure_future(self._slot_freed.wait()),
                asyncio.ensure_future(self._stopping.wait()),
            }
            await self._wait_beating(waiters)
            for waiter in waiters:
                waiter.cancel()
        if self._stopping.is_set():
            return 0
        return self._concurrency - len(self._in_flight)

    async def _wait_beating(
        self, waiters: Collection[asyncio.Future[Any]], at_most_s: float | None = None
    ) -> None:
        """Wait until one of ``waiters`` is done (or ``at_most_s``), beating the liveness
        heartbeat meanwhile: waiting for a slot, a long poll or a backoff is the loop
        turning. Only a loop that stops running (a blocked event loop, a hang in the
        loop itself) goes quiet."""
        end = None if at_most_s is None else time.monotonic() + at_most_s
        while True:
            step = BEAT_EVERY_S if end is None else min(BEAT_EVERY_S, end - time.monotonic())
            done, _ = await asyncio.wait(
                waiters, timeout=max(0.0, step), return_when=asyncio.FIRST_COMPLETED
            )
            self._beat()
            if done or (end is not None and time.monotonic() >= end):
                return

    async def _receive(self, count: int) -> list[QueueMessage]:
        poll = asyncio.ensure_future(
            self._sqs.receive_message(
                QueueUrl=self._url,
                MaxNumberOfMessages=count,
                WaitTimeSeconds=self._wait_s,
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
                MessageAttributeNames=["All"],
            )
        )
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await self._wait_beating({poll, stopping})
            if not poll.done():
                # Stop came during the long poll. Let it end (SQS would otherwise still
                # hand its messages to the closed call and hide them for a whole
                # visibility timeout), but only while the shutdown budget allows.
                await asyncio.wait({poll}, timeout=self._shutdown_left(RELEASE_RESERVE_S))
            if not poll.done():
                log.warning("abandoning a long poll still open at the end of the shutdown")
                poll.cancel()
                return []
        except asyncio.CancelledError:
            poll.cancel()
            raise
        finally:
            stopping.cancel()
        response = poll.result()
        messages = [QueueMessage.from_sqs(raw) for raw in response.get("Messages", [])]
        if messages and self._stopping.is_set():
            await self._release(messages)  # arrived during the last poll: hand them back
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
            outcomes = await self._handle_within_deadline(messages)
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

    async def _handle_within_deadline(self, messages: list[QueueMessage]) -> Outcomes:
        """The handler's outcomes; past the job deadline, cancel it and retry them all
        (effects are idempotent, so a message that had finished is merely redone)."""
        task = asyncio.ensure_future(self._handler(messages))
        try:
            await asyncio.wait({task}, timeout=self._deadline_s)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if task.done():
            return task.result()
        log.warning(
            "job deadline (%gs) passed; abandoning %d messages, to be retried with backoff",
            self._deadline_s,
            len(messages),
            extra={"message_ids": [m.message_id for m in messages]},
        )
        MESSAGES.labels(self._name, "abandoned").inc(len(messages))
        task.add_done_callback(_forget_result)
        task.cancel()
        await asyncio.wait({task}, timeout=ABANDON_WAIT_S)
        if not task.done():
            # It ignores cancellation: keep a reference, free the slots anyway.
            log.error("an abandoned handler did not unwind within %gs", ABANDON_WAIT_S)
            self._abandoned.add(task)
            task.add_done_callback(self._abandoned.discard)
        return Outcomes()

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
        self._deleter.schedule(done)
        self.processed += len(done)
        try:
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
        # A message past its job deadline is being abandoned: no longer extended.
        period = max(1.0, self._visibility_s / 3)
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            held = [
                m
                for m in self._in_flight.values()
                if period / 2 <= now - m.received_at < self._deadline_s
            ]
            if not held:
                continue
            try:
                await set_visibility(self._sqs, self._url, [(m, self._visibility_s) for m in held])
            except Exception as err:
                log.warning("visibility heartbeat failed: %r", err)

    async def _drain(self) -> None:
        if self._batches:
            log.info("draining %d in-flight messages", len(self._in_flight))
            timeout = self._shutdown_left(RELEASE_RESERVE_S)
            _, pending = await asyncio.wait(set(self._batches), timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=self._shutdown_left() / 2)
        leftover = list(self._in_flight.values())
        if leftover:
            log.warning("releasing %d unfinished messages", len(leftover))
            await self._release(leftover)
            self._in_flight.clear()
        try:
            async with asyncio.timeout(max(self._shutdown_left(), 0.1)):
                await self._deleter.close()
        except TimeoutError:
            log.warning("some done messages were not deleted; they will be redelivered")

    async def _release(self, messages: list[QueueMessage]) -> None:
        """Hand messages back (visibility 0) within what is left of the shutdown budget;
        if AWS cannot be reached by then, they reappear after their visibility timeout."""
        try:
            async with asyncio.timeout(max(self._shutdown_left(), 0.1)):
                await release_batch(self._sqs, self._url, messages)
        except Exception as err:
            log.warning("could not release %d messages (%r)", len(messages), err)

    async def _sleep_unless_stopping(self, delay: float) -> None:
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await self._wait_beating({stopping}, at_most_s=delay)
        finally:
            stopping.cancel()


def _forget_result(task: asyncio.Future[Outcomes]) -> None:
    """An abandoned handler's result or error no longer matters (and is not an
    unretrieved-exception warning)."""
    if not task.cancelled():
        task.exception()


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
    """A QueueWorker on the named queue, configured from settings. With a heartbeat file
    configured, the process's liveness watchdog runs too."""
    url = await queue_url(sqs, queue_name, patience_s=settings.startup_wait_s)
    dlq_url = None
    if dead_letter_queue:
        dlq_url = await queue_url(sqs, dead_letter_queue, patience_s=settings.startup_wait_s)
    heartbeat = process_heartbeat(settings.heartbeat_file)
    if settings.heartbeat_file:
        heartbeat.watch(settings.liveness_max_age)
    return QueueWorker(
        sqs,
        url,
        handler,
        concurrency=concurrency or settings.worker_concurrency,
        wait_s=settings.receive_wait_s,
        grace_s=settings.shutdown_grace_s,
        job_deadline_s=settings.job_deadline_s,
        name=name,
        heartbeat=heartbeat,
        visibility_timeout_s=settings.visibility_timeout_s,
        backoff=backoff or Backoff(settings.retry_base_s, settings.retry_max_s),
        dlq_url=dlq_url,
        gather_s=settings.gather_s,
    )


def run_service(name: str, run: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """A worker process's entry point: logging as the settings say, then ``run`` on uvloop
    (the event loop uvicorn already gives the api): its transports, timers and callbacks
    are C, where asyncio's are Python run for every AWS call."""
    settings = get_settings()
    configure_logging(name, settings.log_level, settings.log_format)
    uvloop.run(run())


async def run_until_signalled(
    workers: Sequence[QueueWorker],
    background: Sequence[Callable[[asyncio.Event], Awaitable[None]]] = (),
) -> None:
    """Run workers (and background loops that watch a stop event) until SIGTERM/SIGINT
    or until one of them fails, then stop them all together. The shutdown is bounded by
    the workers' grace, whatever AWS does: what is still running after it is cancelled."""
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
    failed = asyncio.ensure_future(asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION))
    signalled = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait({failed, signalled}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop()
        signalled.cancel()
        budget = max((w.grace_s for w in workers), default=0.0) + 1.0
        _, pending = await asyncio.wait(tasks, timeout=budget)
        for task in pending:
            log.warning("cancelling %s: still running at the end of the shutdown", task)
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=1.0)
        failed.cancel()
    for task in tasks:
        error = task.exception() if task.done() and not task.cancelled() else None
        if error is not None:
            raise error

"""The shared queue loop against a real SQS emulator: only successes are deleted."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import aioboto3
import pytest
from botocore.exceptions import ClientError
from memeforge_common.aws import AwsClients, client_config
from memeforge_common.backoff import Backoff
from memeforge_common.bootstrap import ensure_queue
from memeforge_common.queues import QueueMessage, queue_url, send_batch
from memeforge_common.worker import Outcomes, PoisonMessage, QueueWorker, per_message
from prometheus_client import REGISTRY

from devenv.drills.tcpproxy import TcpProxy
from devenv.run.emulator import Emulator

pytestmark = pytest.mark.integration

ONE_SECOND = Backoff(base_s=1, max_s=1)


async def _drain_bodies(aws: AwsClients, url: str) -> list[str]:
    bodies: list[str] = []
    while True:
        response = await aws.sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1
        )
        messages = response.get("Messages", [])
        if not messages:
            return bodies
        bodies += [m["Body"] for m in messages]


async def test_worker_deletes_only_messages_that_succeeded(aws: AwsClients) -> None:
    """README "a message is deleted only after its effect is durable"."""
    url = await ensure_queue(aws.sqs, "mf-worker-test", {"VisibilityTimeout": "1"})
    bodies = [f"ok-{i}" for i in range(13)] + [f"fail-{i}" for i in range(7)]
    assert await send_batch(aws.sqs, url, bodies) == []
    seen: set[str] = set()
    all_seen = asyncio.Event()

    async def handler(message: QueueMessage) -> None:
        seen.add(message.body)
        if len(seen) == len(bodies):
            all_seen.set()
        if message.body.startswith("fail"):
            raise ValueError("boom")

    worker = QueueWorker(
        aws.sqs,
        url,
        per_message(handler),
        concurrency=4,
        wait_s=1,
        grace_s=5,
        backoff=ONE_SECOND,
        name="only-successes",
    )
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(all_seen.wait(), timeout=60)
    worker.stop()
    await asyncio.wait_for(task, timeout=30)

    # Failed messages come back after their visibility timeout; successes never do.
    await asyncio.sleep(1.5)
    left = await _drain_bodies(aws, url)
    assert sorted(set(left)) == sorted(b for b in bodies if b.startswith("fail"))
    done = {"worker": "only-successes", "outcome": "done"}
    retried = {"worker": "only-successes", "outcome": "retry"}
    assert REGISTRY.get_sample_value("memeforge_messages_total", done) == 13
    assert (REGISTRY.get_sample_value("memeforge_messages_total", retried) or 0) >= 7


async def test_partial_batch_handler_result_is_honoured(aws: AwsClients) -> None:
    url = await ensure_queue(aws.sqs, "mf-batch-test", {"VisibilityTimeout": "1"})
    await send_batch(aws.sqs, url, [f"m{i}" for i in range(10)])
    handled: list[str] = []
    done = asyncio.Event()

    async def handle_batch(messages: Sequence[QueueMessage]) -> Outcomes:
        handled.extend(m.body for m in messages)
        if len(set(handled)) >= 10:
            done.set()
        # Acknowledge only even-numbered messages.
        return Outcomes(done={m.message_id for m in messages if int(m.body[1:]) % 2 == 0})

    worker = QueueWorker(
        aws.sqs, url, handle_batch, concurrency=10, wait_s=1, grace_s=5, backoff=ONE_SECOND
    )
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(done.wait(), timeout=60)
    worker.stop()
    await asyncio.wait_for(task, timeout=30)
    await asyncio.sleep(1.5)
    assert sorted(set(await _drain_bodies(aws, url))) == [f"m{i}" for i in range(1, 10, 2)]


async def test_stop_releases_messages_still_in_flight(aws: AwsClients) -> None:
    """README "SIGTERM: workers stop receiving, finish or release (visibility 0)"."""
    url = await ensure_queue(aws.sqs, "mf-release-test", {"VisibilityTimeout": "300"})
    await send_batch(aws.sqs, url, ["slow"])
    started = asyncio.Event()

    async def slow(message: QueueMessage) -> None:
        started.set()
        await asyncio.sleep(3600)

    worker = QueueWorker(aws.sqs, url, per_message(slow), concurrency=1, wait_s=1, grace_s=0.5)
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(started.wait(), timeout=30)
    worker.stop()
    await asyncio.wait_for(task, timeout=30)
    # Visibility was 300 s: seeing it again at once proves the worker released it.
    assert await _drain_bodies(aws, url) == ["slow"]


async def test_failed_messages_back_off_exponentially(aws: AwsClients) -> None:
    """README "Retries with backoff": visibility RETRY_BASE_S * 2^(n-1)."""
    url = await ensure_queue(aws.sqs, "mf-backoff-test", {"VisibilityTimeout": "1"})
    await send_batch(aws.sqs, url, ["flaky"])
    receives: list[int] = []
    third = asyncio.Event()

    async def flaky(message: QueueMessage) -> None:
        receives.append(message.receive_count)
        if message.receive_count >= 3:
            third.set()
            return
        raise ConnectionError("transient")

    worker = QueueWorker(
        aws.sqs, url, per_message(flaky), concurrency=1, wait_s=1, backoff=Backoff(2.0, 60.0)
    )
    task = asyncio.create_task(worker.run())
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.wait_for(third.wait(), timeout=60)
    elapsed = loop.time() - started
    worker.stop()
    await asyncio.wait_for(task, timeout=30)
    assert receives == [1, 2, 3]
    # Delays of ~2 s then ~4 s (±20 %) instead of the queue's 1 s visibility timeout.
    assert elapsed >= 2 * 0.8 + 4 * 0.8
    assert await _drain_bodies(aws, url) == []


async def test_poison_is_dead_lettered_at_once_with_its_reason(aws: AwsClients) -> None:
    """README "unreadable messages ... go to the DLQ at once"."""
    url = await ensure_queue(aws.sqs, "mf-poison-test", {"VisibilityTimeout": "30"})
    dlq = await ensure_queue(aws.sqs, "mf-poison-test-dlq", {})
    await send_batch(aws.sqs, url, ["good", "garbage"])
    seen: set[str] = set()
    both = asyncio.Event()

    async def handler(message: QueueMessage) -> None:
        seen.add(message.body)
        if len(seen) == 2:
            both.set()
        if message.body == "garbage":
            raise PoisonMessage("not a job")

    worker = QueueWorker(aws.sqs, url, per_message(handler), concurrency=2, wait_s=1, dlq_url=dlq)
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(both.wait(), timeout=30)
    worker.stop()
    await asyncio.wait_for(task, timeout=30)
    assert await _drain_bodies(aws, url) == []  # neither is retried
    dead = await aws.sqs.receive_message(
        QueueUrl=dlq, MessageAttributeNames=["All"], WaitTimeSeconds=1
    )
    [message] = dead["Messages"]
    assert message["Body"] == "garbage"
    assert message["MessageAttributes"]["memeforge-error"]["StringValue"] == "not a job"


async def test_visibility_heartbeat_keeps_a_long_job_from_a_second_worker(
    aws: AwsClients,
) -> None:
    """README "Visibility heartbeat: long renders extend their message's visibility"."""
    url = await ensure_queue(aws.sqs, "mf-heartbeat-test", {"VisibilityTimeout": "3"})
    await send_batch(aws.sqs, url, ["long"])
    started, finish = asyncio.Event(), asyncio.Event()

    async def long_job(message: QueueMessage) -> None:
        started.set()
        await finish.wait()

    worker = QueueWorker(
        aws.sqs, url, per_message(long_job), concurrency=1, wait_s=1, visibility_timeout_s=3
    )
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(started.wait(), timeout=30)
    # Three times the visibility timeout: without the heartbeat it would reappear.
    stolen = []
    for _ in range(9):
        response = await aws.sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)
        stolen += response.get("Messages", [])
    finish.set()
    worker.stop()
    await asyncio.wait_for(task, timeout=30)
    assert stolen == []
    assert await _drain_bodies(aws, url) == []


class _SignalsPolls:
    """The real SQS client, signalling as ReceiveMessage calls go out and as queue
    lookups are refused."""

    def __init__(self, sqs: object) -> None:
        self._sqs = sqs
        self.polling = asyncio.Event()
        self.polling_again = asyncio.Event()  # a second ReceiveMessage went out
        self.queue_lookups_refused = asyncio.Event()

    def __getattr__(self, name: str) -> object:
        return getattr(self._sqs, name)

    async def receive_message(self, **kwargs: object) -> object:
        if self.polling.is_set():
            self.polling_again.set()
        self.polling.set()
        return await self._sqs.receive_message(**kwargs)  # type: ignore[attr-defined]

    async def get_queue_url(self, **kwargs: object) -> object:
        try:
            return await self._sqs.get_queue_url(**kwargs)  # type: ignore[attr-defined]
        except ClientError:
            self.queue_lookups_refused.set()
            raise


async def test_messages_arriving_during_the_last_long_poll_are_handed_back(
    aws: AwsClients,
) -> None:
    url = await ensure_queue(aws.sqs, "mf-stop-poll-test", {"VisibilityTimeout": "300"})
    handled: list[str] = []

    async def handler(message: QueueMessage) -> None:
        handled.append(message.body)

    sqs = _SignalsPolls(aws.sqs)
    worker = QueueWorker(sqs, url, per_message(handler), concurrency=1, wait_s=3)  # type: ignore[arg-type]
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(sqs.polling.wait(), timeout=30)  # its long poll is on the wire
    worker.stop()
    await send_batch(aws.sqs, url, ["late"])  # arrives while that poll is still open
    await asyncio.wait_for(task, timeout=30)
    assert handled == []
    # Visibility is 300 s: seeing it now proves the stopping worker handed it back.
    assert await _drain_bodies(aws, url) == ["late"]


async def test_failed_receives_are_counted_and_survived(
    aws: AwsClients, emulator: Emulator
) -> None:
    """README: worker metrics count "receive errors"; the worker survives them."""
    url = await ensure_queue(aws.sqs, "mf-receive-errors-test", {})
    labels = {"worker": "receive-errors"}
    before = REGISTRY.get_sample_value("memeforge_receive_errors_total", labels) or 0.0
    proxy, proxy_url = await TcpProxy.in_front_of(emulator.env["AWS_ENDPOINT_URL"])
    try:
        proxy.pause(3600)
        session = aioboto3.Session(region_name="us-east-1")
        async with session.client("sqs", endpoint_url=proxy_url, config=client_config()) as sqs:
            worker = QueueWorker(
                sqs,
                url,
                per_message(lambda m: asyncio.sleep(0)),
                concurrency=1,
                wait_s=1,
                name="receive-errors",
            )
            task = asyncio.create_task(worker.run())
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 120
            while loop.time() < deadline and not task.done():
                now = REGISTRY.get_sample_value("memeforge_receive_errors_total", labels) or 0.0
                if now > before:
                    break
                await asyncio.sleep(0.2)
            assert not task.done(), "the worker died of a failed receive"
            worker.stop()
            await asyncio.wait_for(task, timeout=60)
        after = REGISTRY.get_sample_value("memeforge_receive_errors_total", labels) or 0.0
        assert after > before
        assert proxy.refused > 0
    finally:
        await proxy.close()


async def test_a_service_starting_during_an_outage_waits_for_aws(
    aws: AwsClients, emulator: Emulator
) -> None:
    """README "AWS outages: services back off and recover by themselves"."""
    await ensure_queue(aws.sqs, "mf-outage-start-test", {})
    proxy, proxy_url = await TcpProxy.in_front_of(emulator.env["AWS_ENDPOINT_URL"])
    try:
        # The outage lasts until the lookup has been refused (not a fixed 2 s, which a
        # loaded machine can spend before the first attempt), then AWS is back.
        proxy.pause(300.0)
        session = aioboto3.Session(region_name="us-east-1")
        async with session.client("sqs", endpoint_url=proxy_url, config=client_config()) as sqs:
            lookup = asyncio.create_task(queue_url(sqs, "mf-outage-start-test"))
            for _ in range(600):
                if proxy.refused > 0:
                    break
                await asyncio.sleep(0.1)
            assert proxy.refused > 0
            assert not lookup.done()  # refused, and still waiting
            proxy.pause(0.0)
            url = await asyncio.wait_for(lookup, timeout=60)
            assert url.endswith("/mf-outage-start-test")
    finally:
        await proxy.close()


async def test_a_queue_not_created_yet_is_waited_for(aws: AwsClients) -> None:
    """Services may start before the bootstrap: a missing queue is retried, not fatal."""
    sqs = _SignalsPolls(aws.sqs)
    waiting = asyncio.create_task(queue_url(sqs, "mf-created-later", patience_s=60))  # type: ignore[arg-type]
    await asyncio.wait_for(sqs.queue_lookups_refused.wait(), timeout=30)
    assert not waiting.done()  # refused ("no such queue"), and still waiting
    await ensure_queue(aws.sqs, "mf-created-later", {})
    assert (await asyncio.wait_for(waiting, timeout=30)).endswith("/mf-created-later")
    with pytest.raises(ClientError):  # and it gives up once its patience is spent
        await queue_url(aws.sqs, "mf-never-created", patience_s=1)


async def test_a_hung_job_is_abandoned_at_its_deadline_and_retried_with_backoff(
    aws: AwsClients,
) -> None:
    # Visibility 300 s: seeing the message again soon proves the worker set a backoff.
    """README "Job deadline": abandoned, no longer extended, retried with backoff."""
    url = await ensure_queue(aws.sqs, "mf-deadline-test", {"VisibilityTimeout": "300"})
    await send_batch(aws.sqs, url, ["hangs-once"])
    receives: list[int] = []
    cancelled = asyncio.Event()
    retried = asyncio.Event()

    async def hangs_first_time(message: QueueMessage) -> None:
        receives.append(message.receive_count)
        if message.receive_count > 1:
            retried.set()
            return
        try:
            await asyncio.Event().wait()  # a render that never returns
        except asyncio.CancelledError:
            cancelled.set()
            raise

    worker = QueueWorker(
        aws.sqs,
        url,
        per_message(hangs_first_time),
        concurrency=1,
        wait_s=1,
        job_deadline_s=1.0,
        backoff=ONE_SECOND,
        name="deadline",
    )
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(retried.wait(), timeout=60)
    worker.stop()
    await asyncio.wait_for(task, timeout=30)
    assert cancelled.is_set()  # the hung task was cancelled, not left holding its slot
    assert receives == [1, 2]
    abandoned = {"worker": "deadline", "outcome": "abandoned"}
    assert REGISTRY.get_sample_value("memeforge_messages_total", abandoned) == 1
    assert await _drain_bodies(aws, url) == []  # the retry succeeded and was deleted


async def test_stop_during_a_long_poll_releases_held_messages_within_the_grace(
    aws: AwsClients,
) -> None:
    """README "SIGTERM": within the grace "(a long poll under way included)".
    Production timings: a 20 s long poll and a 25 s budget counted from stop(), so a
    poll under way does not push the release of held messages past the grace."""
    url = await ensure_queue(aws.sqs, "mf-poll-budget-test", {"VisibilityTimeout": "300"})
    await send_batch(aws.sqs, url, ["held"])
    started = asyncio.Event()

    async def slow(message: QueueMessage) -> None:
        started.set()
        await asyncio.sleep(3600)

    sqs = _SignalsPolls(aws.sqs)
    worker = QueueWorker(sqs, url, per_message(slow), concurrency=2, wait_s=20, grace_s=25)  # type: ignore[arg-type]
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(started.wait(), timeout=30)
    await asyncio.wait_for(sqs.polling_again.wait(), timeout=30)  # a 20 s poll for slot 2
    worker.stop()
    await asyncio.wait_for(task, timeout=60)
    assert await _drain_bodies(aws, url) == ["held"]  # released, not hidden for 300 s

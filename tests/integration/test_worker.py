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
    """The real SQS client, setting ``polling`` as each ReceiveMessage call goes out."""

    def __init__(self, sqs: object) -> None:
        self._sqs = sqs
        self.polling = asyncio.Event()

    def __getattr__(self, name: str) -> object:
        return getattr(self._sqs, name)

    async def receive_message(self, **kwargs: object) -> object:
        self.polling.set()
        return await self._sqs.receive_message(**kwargs)  # type: ignore[attr-defined]


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


async def test_a_service_starting_during_an_outage_waits_for_aws(
    aws: AwsClients, emulator: Emulator
) -> None:
    await ensure_queue(aws.sqs, "mf-outage-start-test", {})
    proxy, proxy_url = await TcpProxy.in_front_of(emulator.env["AWS_ENDPOINT_URL"])
    try:
        proxy.pause(2.0)
        session = aioboto3.Session(region_name="us-east-1")
        async with session.client("sqs", endpoint_url=proxy_url, config=client_config()) as sqs:
            url = await queue_url(sqs, "mf-outage-start-test")
            assert url.endswith("/mf-outage-start-test")
            assert proxy.refused > 0  # it really was refused first, then got through
            with pytest.raises(ClientError):  # a refusal is not an outage: no waiting
                await queue_url(sqs, "mf-no-such-queue")
    finally:
        await proxy.close()

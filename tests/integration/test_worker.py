"""The shared queue loop against a real SQS emulator: only successes are deleted."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from memeforge_common.aws import AwsClients
from memeforge_common.bootstrap import ensure_queue
from memeforge_common.queues import QueueMessage, send_batch
from memeforge_common.worker import QueueWorker, per_message

pytestmark = pytest.mark.integration


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

    worker = QueueWorker(aws.sqs, url, per_message(handler), concurrency=4, wait_s=1, grace_s=5)
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(all_seen.wait(), timeout=60)
    worker.stop()
    await asyncio.wait_for(task, timeout=30)

    # Failed messages come back after their visibility timeout; successes never do.
    await asyncio.sleep(1.5)
    left = await _drain_bodies(aws, url)
    assert sorted(set(left)) == sorted(b for b in bodies if b.startswith("fail"))


async def test_partial_batch_handler_result_is_honoured(aws: AwsClients) -> None:
    url = await ensure_queue(aws.sqs, "mf-batch-test", {"VisibilityTimeout": "1"})
    await send_batch(aws.sqs, url, [f"m{i}" for i in range(10)])
    handled: list[str] = []
    done = asyncio.Event()

    async def handle_batch(messages: Sequence[QueueMessage]) -> set[str]:
        handled.extend(m.body for m in messages)
        if len(set(handled)) >= 10:
            done.set()
        # Acknowledge only even-numbered messages.
        return {m.message_id for m in messages if int(m.body[1:]) % 2 == 0}

    worker = QueueWorker(aws.sqs, url, handle_batch, concurrency=10, wait_s=1, grace_s=5)
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

"""SQS batching for fewer calls per meme (issue #12): size-bounded sends, gathered
deletes, and a receive loop whose batches grow with load."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from memeforge_common.queues import SQS_BATCH_BYTES, QueueMessage, send_batch
from memeforge_common.worker import Deleter, Outcomes, QueueWorker

pytestmark = pytest.mark.unit


class FakeSqs:
    """Stands in for the SQS client: a queue of bodies that receive_message hands out
    (a long poll on an empty queue waits until more arrive), and a log of each call."""

    def __init__(self, bodies: Sequence[str] = ()) -> None:
        self.queue = list(bodies)
        self.arrived = asyncio.Event()
        self.asked: list[int] = []  # MaxNumberOfMessages of each receive that got some
        self.sent: list[list[str]] = []
        self.deleted: list[list[str]] = []

    def add(self, bodies: Sequence[str]) -> None:
        self.queue += bodies
        self.arrived.set()

    async def receive_message(
        self, MaxNumberOfMessages: int, WaitTimeSeconds: int, **_: Any
    ) -> Any:
        if not self.queue:
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), timeout=WaitTimeSeconds)
            except TimeoutError:
                return {"Messages": []}
        taken, self.queue = self.queue[:MaxNumberOfMessages], self.queue[MaxNumberOfMessages:]
        self.asked.append(MaxNumberOfMessages)
        return {"Messages": [{"MessageId": b, "ReceiptHandle": b, "Body": b} for b in taken]}

    async def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:
        assert len(Entries) <= 10
        self.sent.append([e["MessageBody"] for e in Entries])
        return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}

    async def delete_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:
        assert len(Entries) <= 10
        self.deleted.append([e["ReceiptHandle"] for e in Entries])
        return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}

    async def change_message_visibility_batch(self, **_: Any) -> Any:
        return {"Successful": [], "Failed": []}


def message(body: str) -> QueueMessage:
    return QueueMessage(message_id=body, receipt_handle=body, body=body, receive_count=1)


async def test_a_send_never_exceeds_the_batch_size_limit() -> None:
    """Ten requests with the largest specs are over SQS's 256 KiB a call: sent in more
    calls, in order, none lost."""
    sqs = FakeSqs()
    bodies = [f"{i:02d}" + "x" * 40_000 for i in range(12)] + ["small"]
    assert await send_batch(sqs, "url", bodies) == []  # type: ignore[arg-type]
    assert [body for call in sqs.sent for body in call] == bodies
    assert all(sum(len(b) for b in call) <= SQS_BATCH_BYTES for call in sqs.sent)
    assert [len(call) for call in sqs.sent] == [6, 7]  # the small one fits beside six


async def test_the_deleter_sends_full_batches_and_the_rest_on_close() -> None:
    sqs = FakeSqs()
    deleter = Deleter(sqs, "url", gather_s=3600)  # type: ignore[arg-type]
    deleter.schedule([message(f"m{i}") for i in range(23)])
    await deleter.close()  # no waiting out the gather: closing deletes what waits
    assert [len(call) for call in sqs.deleted] == [10, 10, 3]
    assert sorted(h for call in sqs.deleted for h in call) == sorted(f"m{i}" for i in range(23))


async def test_the_deleter_gathers_messages_settled_one_by_one() -> None:
    sqs = FakeSqs()
    deleter = Deleter(sqs, "url", gather_s=3600)  # type: ignore[arg-type]
    for i in range(4):
        deleter.schedule([message(f"m{i}")])
        await asyncio.sleep(0)
    assert sqs.deleted == []  # still gathering
    await deleter.close()
    assert sqs.deleted == [["m0", "m1", "m2", "m3"]]


async def test_a_busy_worker_receives_alternating_full_batches() -> None:
    """With a backlog, a receive asks for half the concurrency and the next waits until
    that many slots are free: batches of 8 at concurrency 16 (not 10, then one batch per
    freed slot), and 8 more in flight while one batch finishes."""
    sqs = FakeSqs([f"m{i:02d}" for i in range(40)])
    batches: list[tuple[list[str], asyncio.Event]] = []
    arrived = asyncio.Event()

    async def handler(messages: Sequence[QueueMessage]) -> Outcomes:
        finish = asyncio.Event()
        batches.append(([m.body for m in messages], finish))
        arrived.set()
        await finish.wait()
        return Outcomes(done={m.message_id for m in messages})

    async def until_batches(count: int) -> None:
        while len(batches) < count:
            arrived.clear()
            await asyncio.wait_for(arrived.wait(), timeout=30)

    worker = QueueWorker(sqs, "url", handler, concurrency=16, wait_s=1, delete_gather_s=0)  # type: ignore[arg-type]
    task = asyncio.create_task(worker.run())
    await until_batches(2)
    for _ in range(20):
        await asyncio.sleep(0)
    assert len(batches) == 2  # 16 in flight: the third waits for a batch to finish
    for done in range(3):
        batches[done][1].set()
        await until_batches(done + 3)
    for _, finish in batches:
        finish.set()
    worker.stop()  # its drain lets the finished batches settle, and deletes them
    await asyncio.wait_for(task, timeout=30)
    assert [len(bodies) for bodies, _ in batches] == [8] * 5
    assert sqs.asked == [8] * 5
    assert sorted(h for call in sqs.deleted for h in call) == [f"m{i:02d}" for i in range(40)]


async def test_a_lightly_loaded_worker_receives_at_once() -> None:
    """One message at a time: no gathering wait, each handled as it comes."""
    sqs = FakeSqs()
    seen = asyncio.Queue[str]()

    async def handler(messages: Sequence[QueueMessage]) -> Outcomes:
        for m in messages:
            seen.put_nowait(m.body)
        return Outcomes(done={m.message_id for m in messages})

    worker = QueueWorker(sqs, "url", handler, concurrency=16, wait_s=1, gather_s=3600)  # type: ignore[arg-type]
    task = asyncio.create_task(worker.run())
    for i in range(3):
        sqs.add([f"one-{i}"])
        assert await asyncio.wait_for(seen.get(), timeout=30) == f"one-{i}"
    worker.stop()
    await task

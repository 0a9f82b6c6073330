"""Publisher.publish coalesces: one SendMessageBatch in flight, the rest in the next."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

import pytest
from memeforge_common.models import RequestMessage
from memeforge_common.publishers import PublishFailed, RequestPublisher

pytestmark = pytest.mark.unit

TRACE = "00-0123456789abcdef0123456789abcdef-0123456789abcdef-01"
NAMES: dict[str, str] = {}  # meme id → the test's name for it


def meme_id(name: str) -> str:
    digest = hashlib.md5(name.encode()).hexdigest()
    NAMES[digest] = name
    return digest


def name_of(entry: dict[str, Any]) -> str:
    return NAMES[json.loads(entry["MessageBody"])["meme_id"]]


class HeldSqs:
    """Stands in for the SQS client's send_message_batch: each call waits until the test
    releases it, then answers with the failures it was told to give (by meme id)."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.refuse: set[str] = set()
        self.broken_calls: set[int] = set()  # calls (by number) that raise
        self._release = asyncio.Event()
        self._arrived = asyncio.Condition()

    async def started(self, calls: int) -> None:
        """Until ``calls`` calls have been made."""
        async with self._arrived:
            await self._arrived.wait_for(lambda: len(self.calls) >= calls)

    def release(self) -> None:
        self._release.set()

    async def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:
        number = len(self.calls)
        async with self._arrived:
            self.calls.append([name_of(e) for e in Entries])
            self._arrived.notify_all()
        await self._release.wait()
        if number in self.broken_calls:
            raise ConnectionError("SQS unreachable")
        failed = [
            {"Id": e["Id"], "Code": "InternalError", "SenderFault": False}
            for e in Entries
            if name_of(e) in self.refuse
        ]
        return {"Successful": [], "Failed": failed}


def publisher(sqs: HeldSqs) -> RequestPublisher:
    return RequestPublisher(sqs, "http://queue")  # type: ignore[arg-type]


async def publish(p: RequestPublisher, name: str) -> str:
    """The message's name, or what its publish raised."""
    try:
        await p.publish(RequestMessage(meme_id=meme_id(name)), TRACE)
    except Exception as err:
        return f"{name}: {type(err).__name__}"
    return name


async def started(sqs: HeldSqs, calls: int) -> None:
    await sqs.started(calls)


async def test_a_lone_message_is_sent_at_once_in_a_call_of_its_own() -> None:
    sqs = HeldSqs()
    sqs.release()
    await publish(publisher(sqs), "a")
    assert sqs.calls == [["a"]]


async def test_messages_published_while_a_call_is_in_flight_share_the_next_call() -> None:
    sqs = HeldSqs()
    p = publisher(sqs)
    first = asyncio.create_task(publish(p, "first"))
    await started(sqs, 1)
    rest = [asyncio.create_task(publish(p, f"m{i}")) for i in range(12)]
    await asyncio.sleep(0.01)
    assert sqs.calls == [["first"]]  # one call in flight, the rest wait for it
    sqs.release()
    results = await asyncio.gather(first, *rest)
    assert results == ["first"] + [f"m{i}" for i in range(12)]
    # Then at most 10 a call, in the order they were published.
    assert sqs.calls == [["first"], [f"m{i}" for i in range(10)], ["m10", "m11"]]


async def test_a_refused_entry_fails_its_own_publish_only() -> None:
    sqs = HeldSqs()
    p = publisher(sqs)
    sqs.refuse = {"bad"}
    held = asyncio.create_task(publish(p, "held"))
    await started(sqs, 1)
    batch = [asyncio.create_task(publish(p, name)) for name in ("ok1", "bad", "ok2")]
    sqs.release()
    assert await asyncio.gather(held, *batch) == [
        "held",
        "ok1",
        f"bad: {PublishFailed.__name__}",
        "ok2",
    ]


async def test_a_failed_call_fails_exactly_the_messages_it_carried() -> None:
    sqs = HeldSqs()
    p = publisher(sqs)
    sqs.broken_calls = {1}
    held = asyncio.create_task(publish(p, "held"))
    await started(sqs, 1)
    carried = [asyncio.create_task(publish(p, name)) for name in ("x", "y")]
    await asyncio.sleep(0)
    sqs.release()
    assert await held == "held"
    await started(sqs, 2)
    later = asyncio.create_task(publish(p, "later"))
    assert await asyncio.gather(*carried, later) == [
        "x: ConnectionError",
        "y: ConnectionError",
        "later",
    ]
    assert sqs.calls == [["held"], ["x", "y"], ["later"]]


async def test_a_caller_that_goes_away_does_not_take_its_message_off_the_wire() -> None:
    sqs = HeldSqs()
    p = publisher(sqs)
    gone = asyncio.create_task(publish(p, "gone"))
    await started(sqs, 1)
    gone.cancel()
    sqs.release()
    with pytest.raises(asyncio.CancelledError):
        await gone
    await publish(p, "next")
    assert sqs.calls == [["gone"], ["next"]]


async def test_under_load_the_next_call_gathers_more_messages() -> None:
    """After a call of several messages the next waits (up to gather_s) for more: here
    until a whole batch of 10 is there. A lone message after idle is still sent at once."""
    sqs = HeldSqs()
    sqs.release()
    p = RequestPublisher(sqs, "http://queue", gather_s=3600)  # type: ignore[arg-type]
    assert await publish(p, "alone") == "alone"  # after idle: at once, never gathered
    sqs._release.clear()
    held = asyncio.create_task(publish(p, "held"))
    await started(sqs, 2)
    queued = [asyncio.create_task(publish(p, f"m{i}")) for i in range(11)]
    await asyncio.sleep(0)
    sqs.release()
    await asyncio.gather(held, *queued[:10])  # the next call carried 10: loaded
    for _ in range(20):
        await asyncio.sleep(0)
    assert len(sqs.calls) == 3  # m10 waits for more to share its call
    more = [asyncio.create_task(publish(p, f"n{i}")) for i in range(9)]
    await asyncio.gather(queued[10], *more)
    assert sqs.calls == [
        ["alone"],
        ["held"],
        [f"m{i}" for i in range(10)],
        ["m10"] + [f"n{i}" for i in range(9)],
    ]

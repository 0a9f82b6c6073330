"""Publisher.publish coalesces: one SendMessageBatch in flight, the rest in the next."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

import pytest
from memeforge_common.gathering import Gathering
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


class FrozenClock:
    """The gathering's clock, standing still: the budget never runs out by itself."""

    def __call__(self) -> float:
        return 1000.0


async def test_a_lone_post_is_sent_at_once_even_with_a_budget() -> None:
    """Nothing else coming: the call starts without waiting."""
    sqs = HeldSqs()
    p = RequestPublisher(sqs, "http://queue", gathering=Gathering(3600, clock=FrozenClock()))  # type: ignore[arg-type]
    with p.coming() as coming:
        sent = asyncio.create_task(
            p.publish(RequestMessage(meme_id=meme_id("alone")), TRACE, coming)
        )
        for _ in range(20):
            await asyncio.sleep(0)
        assert sqs.calls == [["alone"]]  # on the wire at once (SQS holds the call)
        sqs.release()
        await sent


async def test_a_call_waits_for_messages_announced_as_coming() -> None:
    """POSTs being handled announce their messages: while at least two are coming, the
    call waits for them; once fewer are (one published, one ended without publishing),
    it goes with what it has, and a call waits no longer once 10 are there."""
    sqs = HeldSqs()
    sqs.release()
    gathering = Gathering(3600, clock=FrozenClock())  # the budget never runs out here
    p = RequestPublisher(sqs, "http://queue", gathering=gathering)  # type: ignore[arg-type]
    announced = [p.coming() for _ in range(4)]

    async def post(i: int) -> str:
        with announced[i] as coming:
            await p.publish(RequestMessage(meme_id=meme_id(f"m{i}")), TRACE, coming)
        return f"m{i}"

    async def ticks() -> None:
        for _ in range(20):
            await asyncio.sleep(0)

    first = asyncio.create_task(post(0))
    await ticks()
    assert sqs.calls == []  # three more coming
    second = asyncio.create_task(post(1))
    await ticks()
    assert sqs.calls == []  # two more coming
    with announced[2]:
        pass  # that POST ended without publishing (a 4xx, say)
    assert await asyncio.gather(first, second) == ["m0", "m1"]
    assert sqs.calls == [["m0", "m1"]]
    assert await post(3) == "m3"
    assert sqs.calls == [["m0", "m1"], ["m3"]]


async def test_a_call_with_ten_goes_though_more_are_coming() -> None:
    sqs = HeldSqs()
    sqs.release()
    p = RequestPublisher(sqs, "http://queue", gathering=Gathering(3600, clock=FrozenClock()))  # type: ignore[arg-type]
    announced = [p.coming() for _ in range(13)]
    ten = [
        asyncio.create_task(p.publish(RequestMessage(meme_id=meme_id(f"m{i}")), TRACE, c))
        for i, c in enumerate(announced[:10])
    ]
    await asyncio.gather(*ten)
    assert sqs.calls == [[f"m{i}" for i in range(10)]]
    for c in announced[10:]:
        with c:
            pass

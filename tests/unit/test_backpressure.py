"""The back-pressure gate over an in-memory fake of SQS's GetQueueAttributes (the real
emulator and processes: tests/e2e/test_quotas.py)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from botocore.exceptions import EndpointConnectionError
from memeforge_api.backpressure import QueueDepthGate
from memeforge_api.problems import Problem

pytestmark = pytest.mark.unit


@dataclass
class FakeSqs:
    depths: dict[str, int]
    calls: list[str] = field(default_factory=list)
    down: bool = False

    async def get_queue_attributes(self, *, QueueUrl: str, AttributeNames: list[str]) -> Any:
        self.calls.append(QueueUrl)
        await asyncio.sleep(0)  # let concurrent checks overlap
        if self.down:
            raise EndpointConnectionError(endpoint_url=QueueUrl)
        assert AttributeNames == ["ApproximateNumberOfMessages"]
        return {"Attributes": {"ApproximateNumberOfMessages": str(self.depths[QueueUrl])}}


@dataclass
class Clock:
    now: float = 100.0

    def __call__(self) -> float:
        return self.now


def gate(sqs: FakeSqs, clock: Clock, threshold: int = 10) -> QueueDepthGate:
    return QueueDepthGate(
        cast(Any, sqs), ["requests", "renders"], threshold=threshold, refresh_s=5, clock=clock
    )


async def test_the_backlog_is_both_queues_and_is_read_at_most_once_per_refresh() -> None:
    sqs, clock = FakeSqs({"requests": 3, "renders": 4}), Clock()
    checked = gate(sqs, clock)
    assert await asyncio.gather(*(checked.depth() for _ in range(20))) == [7] * 20
    assert sorted(sqs.calls) == ["renders", "requests"]  # one shared read for 20 checks
    sqs.depths["renders"] = 40
    clock.now += 4.9
    assert await checked.depth() == 7  # cached
    clock.now += 0.1
    assert await checked.depth() == 43
    assert len(sqs.calls) == 4


async def test_over_the_threshold_is_503_overloaded_with_retry_after_and_it_recovers() -> None:
    sqs, clock = FakeSqs({"requests": 5, "renders": 5}), Clock()
    checked = gate(sqs, clock, threshold=10)
    await checked.admit()  # at the threshold: admitted
    sqs.depths["renders"] = 6
    clock.now += 5
    with pytest.raises(Problem) as refused:
        await checked.admit()
    assert refused.value.status == 503
    assert refused.value.code == "overloaded"
    assert refused.value.headers == {"Retry-After": "5"}
    sqs.depths = {"requests": 0, "renders": 0}
    clock.now += 5
    await checked.admit()


async def test_an_unreadable_queue_keeps_the_last_reading_and_waits_a_refresh() -> None:
    sqs, clock = FakeSqs({"requests": 20, "renders": 0}), Clock()
    checked = gate(sqs, clock, threshold=10)
    assert await checked.depth() == 20
    sqs.down = True
    clock.now += 5
    assert await checked.depth() == 20
    calls = len(sqs.calls)
    assert await checked.depth() == 20
    assert len(sqs.calls) == calls  # no retry storm while SQS is down

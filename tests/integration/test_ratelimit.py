"""The per-key rate limit against the real emulator: concurrent requests share one item."""

from __future__ import annotations

import asyncio

import pytest
from memeforge_api.ratelimit import RateLimiter
from memeforge_common.aws import AwsClients
from memeforge_common.settings import Settings

pytestmark = pytest.mark.integration


async def test_concurrent_requests_under_the_limit_are_all_admitted(
    aws: AwsClients, resources: Settings
) -> None:
    """T = 10 ms, shorter than a write under load: each round starts on an idle key that
    the limiters' hints call busy, and the requests race for the idle branch. Losing that
    race is not being over the limit (40 of a burst of 100)."""
    limiters = [
        RateLimiter(aws.dynamodb, resources.table, per_minute=6_000, burst=100) for _ in (1, 2)
    ]
    for _ in range(3):  # cold (no item, no hints), then warm hints on an idle key
        decisions = await asyncio.gather(*(limiters[i % 2].check("k1") for i in range(40)))
        assert [d.admitted for d in decisions] == [True] * 40
        await asyncio.sleep(1.5)  # the whole burst refills: the key is idle again


async def test_past_the_burst_exactly_the_burst_is_admitted(
    aws: AwsClients, resources: Settings
) -> None:
    limiter = RateLimiter(aws.dynamodb, resources.table, per_minute=1, burst=10)  # T = 60 s
    decisions = await asyncio.gather(*(limiter.check("k2") for _ in range(25)))
    assert sum(d.admitted for d in decisions) == 10
    for refused in (d for d in decisions if not d.admitted):
        assert refused.remaining == 0
        assert refused.retry_after_s >= 1
        assert refused.headers()["Retry-After"] == str(refused.retry_after_s)

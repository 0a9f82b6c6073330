"""The per-key rate limit against the real emulator: concurrent requests share one item."""

from __future__ import annotations

import asyncio

import pytest
from memeforge_api.ratelimit import RateLimiter
from memeforge_common.aws import AwsClients
from memeforge_common.settings import Settings
from prometheus_client import REGISTRY

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


def _update_items() -> float:
    labels = {"service": "dynamodb", "operation": "UpdateItem"}
    return REGISTRY.get_sample_value("memeforge_aws_requests_total", labels) or 0.0


async def test_a_busy_key_charges_its_tokens_in_leases(
    aws: AwsClients, resources: Settings
) -> None:
    """Issue #12: not one DynamoDB write per request for a key in steady use, also when
    many requests of the key are in flight at once (they wait for one charge's lease)."""
    limiter = RateLimiter(aws.dynamodb, resources.table, per_minute=60_000, burst=1_000)
    writes = _update_items()
    decisions = [await limiter.check("k3") for _ in range(100)]
    assert all(d.admitted for d in decisions)
    assert _update_items() - writes <= 20  # leases of 1, 2, 4, 8, 16, 16, ...

    async def client() -> list[bool]:
        return [(await limiter.check("k3")).admitted for _ in range(10)]

    writes = _update_items()
    admitted = await asyncio.gather(*(client() for _ in range(16)))
    assert all(all(a) for a in admitted)
    assert _update_items() - writes <= 40


async def test_leases_never_admit_more_than_the_burst(aws: AwsClients, resources: Settings) -> None:
    """Two processes leasing from one key: every token is charged before it is spent, so
    together they never pass the burst; unspent leased tokens are what they may lose."""
    limiters = [
        RateLimiter(aws.dynamodb, resources.table, per_minute=1, burst=100) for _ in (1, 2)
    ]  # T = 60 s: nothing refills during the test; leases of up to 10
    decisions = [await limiters[i % 2].check("k4") for i in range(150)]
    admitted = sum(d.admitted for d in decisions)
    assert 100 - 2 * 9 <= admitted <= 100

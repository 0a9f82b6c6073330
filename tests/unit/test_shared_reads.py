"""Reads shared by a crowd of misses: the tenant endpoint cache (one read per expiry,
whatever the number of POSTs waiting on it) and SharedReads itself (failures)."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest
from memeforge_common.endpoints import Endpoint, EndpointCache, EndpointStore
from memeforge_common.sharedreads import SharedReads

pytestmark = pytest.mark.unit


class HeldEndpoints:
    """Answers ``get`` only when the test releases it, counting the reads."""

    def __init__(self) -> None:
        self.reads = 0
        self.release = asyncio.Event()
        self.endpoint = Endpoint(tenant="acme", secret="whsec_test", url="https://hooks.invalid/")

    async def get(self, tenant: str) -> Endpoint | None:
        self.reads += 1
        await self.release.wait()
        return self.endpoint if tenant == "acme" else None


async def test_concurrent_misses_of_a_tenant_share_one_read() -> None:
    """docs/architecture.md "Requests that find a tenant's cached endpoint missing or
    expired together share one read"."""
    store = HeldEndpoints()
    cache = EndpointCache(cast(EndpointStore, store), ttl_s=60)
    crowd = [asyncio.ensure_future(cache.get("acme")) for _ in range(16)]
    other = asyncio.ensure_future(cache.get("globex"))
    await asyncio.sleep(0)
    store.release.set()
    assert {await got for got in crowd} == {store.endpoint}
    assert await other is None
    assert store.reads == 2  # one per tenant, not one per request
    assert await cache.get("acme") == store.endpoint
    assert await cache.get("globex") is None  # an absent endpoint is cached too
    assert store.reads == 2


async def test_an_expired_endpoint_is_read_again() -> None:
    store = HeldEndpoints()
    store.release.set()
    cache = EndpointCache(cast(EndpointStore, store), ttl_s=0)
    assert await cache.get("acme") == store.endpoint
    assert await cache.get("acme") == store.endpoint
    assert store.reads == 2


async def test_a_failed_read_fails_every_waiter_and_the_next_request_reads_again() -> None:
    reads: SharedReads[str, int] = SharedReads()
    release = asyncio.Event()
    calls = 0

    async def failing() -> int:
        nonlocal calls
        calls += 1
        await release.wait()
        raise ConnectionError("throttled")

    crowd = [asyncio.ensure_future(reads.read("k", failing)) for _ in range(3)]
    await asyncio.sleep(0)
    release.set()
    for waiter in crowd:
        with pytest.raises(ConnectionError):
            await waiter
    assert calls == 1

    async def answer() -> int:
        return 7

    assert await reads.read("k", answer) == 7  # nothing under way any more: a new read

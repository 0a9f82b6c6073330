"""The api's key cache: a crowd of requests past an expiry shares one read of the key."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest
from memeforge_api.auth import KeyCache
from memeforge_common.apikeys import ALL_SCOPES, ApiKey, KeyStore, hash_secret
from memeforge_common.models import utcnow

pytestmark = pytest.mark.unit


class HeldStore:
    """Answers ``get`` only when the test releases it, counting the reads."""

    def __init__(self) -> None:
        self.reads = 0
        self.release = asyncio.Event()
        self.key = ApiKey("k1", "t", "n", ALL_SCOPES, hash_secret("s"), utcnow())

    async def get(self, key_id: str) -> ApiKey | None:
        self.reads += 1
        await self.release.wait()
        return self.key if key_id == "k1" else None


async def test_concurrent_misses_share_one_read() -> None:
    store = HeldStore()
    cache = KeyCache(cast(KeyStore, store), ttl_s=60)
    crowd = [asyncio.ensure_future(cache.get("k1")) for _ in range(50)]
    other = asyncio.ensure_future(cache.get("nope"))
    await asyncio.sleep(0)
    store.release.set()
    assert {await got for got in crowd} == {store.key}
    assert await other is None
    assert store.reads == 2  # one per key id, not one per request
    assert await cache.get("k1") == store.key
    assert store.reads == 2  # cached now


async def test_a_request_that_goes_away_does_not_cancel_the_shared_read() -> None:
    store = HeldStore()
    cache = KeyCache(cast(KeyStore, store), ttl_s=60)
    gone, stays = (asyncio.ensure_future(cache.get("k1")) for _ in range(2))
    await asyncio.sleep(0)
    gone.cancel()
    store.release.set()
    assert await stays == store.key
    assert gone.cancelled()
    assert store.reads == 1


async def test_an_expired_entry_is_read_again() -> None:
    store = HeldStore()
    store.release.set()
    cache = KeyCache(cast(KeyStore, store), ttl_s=0)
    assert await cache.get("k1") == store.key
    assert await cache.get("k1") == store.key
    assert store.reads == 2

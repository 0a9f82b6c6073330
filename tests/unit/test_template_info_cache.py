"""TemplateInfoCache: one S3 lookup per template per period, misses never kept."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from memeforge_common.templates import TemplateInfo, TemplateInfoCache, TemplateStore

pytestmark = pytest.mark.unit


def info(template_id: str, etag: str = '"1"') -> TemplateInfo:
    return TemplateInfo(
        id=template_id,
        tenant="public",
        name=template_id,
        content_type="image/jpeg",
        width=8,
        height=8,
        bytes=100,
        etag=etag,
        last_modified=datetime(2026, 1, 1, tzinfo=UTC),
    )


class CountingStore:
    """Stands in for TemplateStore.find: answers from a dict, counts lookups."""

    def __init__(self) -> None:
        self.templates: dict[str, TemplateInfo] = {}
        self.lookups = 0
        self.gate = asyncio.Event()
        self.gate.set()

    async def find(self, template_id: str, tenant: str) -> TemplateInfo | None:
        self.lookups += 1
        await self.gate.wait()
        return self.templates.get(template_id)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def cache_over(store: CountingStore, clock: Clock, ttl_s: float = 5.0) -> TemplateInfoCache:
    fake: TemplateStore = store  # type: ignore[assignment]
    return TemplateInfoCache(fake, ttl_s, clock=clock)


async def test_a_found_template_is_looked_up_once_per_period() -> None:
    store, clock = CountingStore(), Clock()
    store.templates["a"] = info("a")
    cache = cache_over(store, clock)
    for _ in range(3):
        assert await cache.find("a", "acme") == info("a")
    assert store.lookups == 1
    clock.now = 5.0  # the period is over: asked again, and the new answer is kept
    store.templates["a"] = info("a", etag='"2"')
    assert (await cache.find("a", "acme")) == info("a", etag='"2"')
    assert store.lookups == 2


async def test_tenants_are_cached_apart() -> None:
    store, clock = CountingStore(), Clock()
    store.templates["a"] = info("a")
    cache = cache_over(store, clock)
    await cache.find("a", "acme")
    await cache.find("a", "other")
    assert store.lookups == 2


async def test_a_missing_template_is_asked_for_every_time() -> None:
    """A template uploaded just after a meme failed for want of it is found at once."""
    store, clock = CountingStore(), Clock()
    cache = cache_over(store, clock)
    assert await cache.find("late", "acme") is None
    store.templates["late"] = info("late")
    assert await cache.find("late", "acme") == info("late")
    assert store.lookups == 2


async def test_concurrent_misses_share_one_lookup() -> None:
    store, clock = CountingStore(), Clock()
    store.templates["a"] = info("a")
    store.gate.clear()
    cache = cache_over(store, clock)
    waiting = [asyncio.ensure_future(cache.find("a", "acme")) for _ in range(10)]
    await asyncio.sleep(0)
    store.gate.set()
    assert await asyncio.gather(*waiting) == [info("a")] * 10
    assert store.lookups == 1


async def test_a_failed_lookup_is_not_kept() -> None:
    store, clock = CountingStore(), Clock()
    cache = cache_over(store, clock)

    async def failing(template_id: str, tenant: str) -> TemplateInfo | None:
        store.lookups += 1
        raise ConnectionError("S3 unreachable")

    store.find = failing  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        await cache.find("a", "acme")
    with pytest.raises(ConnectionError):
        await cache.find("a", "acme")
    assert store.lookups == 2

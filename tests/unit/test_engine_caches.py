"""Every engine cache is an LRU bounded by bytes, and random text cannot grow it past."""

from __future__ import annotations

import random

import pytest
from memeforge_common import limits
from memeforge_renderer import engine
from memeforge_renderer.engine.lru import ByteLRU
from memeforge_renderer.engine.text import TOKENS

pytestmark = pytest.mark.unit


def test_the_lru_evicts_the_least_recently_used_past_its_byte_budget() -> None:
    lru: ByteLRU[str, int] = ByteLRU(max_bytes=300)
    for key in "abc":
        lru.put(key, ord(key), 100)
    assert lru.get("a") == ord("a")  # "b" is now the oldest
    lru.put("d", 4, 100)
    assert "b" not in lru
    assert [k for k in "acd" if k in lru] == ["a", "c", "d"]
    assert lru.size_bytes == 300


def test_the_lru_keeps_no_entry_larger_than_its_budget_and_tracks_resizes() -> None:
    lru: ByteLRU[str, int] = ByteLRU(max_bytes=300)
    lru.put("a", 1, 100)
    lru.put("huge", 2, 301)
    assert "huge" not in lru
    assert lru.get("a") == 1
    lru.put("b", 2, 100)
    lru.resize("a", 250)  # "a" counts as just used: "b" goes
    assert "b" not in lru
    assert lru.size_bytes == 250
    lru.set_budget(100)
    assert len(lru) == 0
    assert lru.size_bytes == 0


def test_peek_does_not_refresh_an_entry() -> None:
    lru: ByteLRU[str, int] = ByteLRU(max_bytes=200)
    lru.put("a", 1, 100)
    lru.put("b", 2, 100)
    assert lru.peek("a") == 1
    lru.put("c", 3, 100)
    assert "a" not in lru


def _random_caption(rng: random.Random, n: int) -> str:
    words = []
    for _ in range(n // 8):
        base = rng.choice((0xE000, 0xF0000, 0x10000, 0x0400, 0x4E00, 0x20000))
        words.append("".join(chr(base + rng.randrange(0x1000)) for _ in range(8)))
    return " ".join(words)


def test_random_unicode_captions_keep_every_text_cache_within_its_budget() -> None:
    engine.configure(token_cache_bytes=200_000, kern_cache_bytes=20_000, fit_cache_bytes=10_000)
    try:
        rng = random.Random(18)
        for i in range(300):
            engine.fit_text(_random_caption(rng, 64), "anton", 300 + i, 120 + i % 50, max_size=60)
        sizes, budgets = engine.cache_sizes(), engine.cache_budgets()
        assert all(sizes[name] <= budgets[name] for name in sizes), (sizes, budgets)
        # Full: they evicted instead of growing (the captions would need far more).
        assert sizes["token"] > 0.8 * budgets["token"]
        assert sizes["fit_geometry"] > 0.8 * budgets["fit_geometry"]
        assert TOKENS.misses > len(TOKENS)
    finally:
        engine.configure(
            token_cache_bytes=limits.TOKEN_CACHE_BYTES,
            kern_cache_bytes=limits.KERN_CACHE_BYTES,
            fit_cache_bytes=limits.FIT_CACHE_BYTES,
        )

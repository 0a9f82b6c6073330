"""The renderer's process pool applies the cache budgets from the settings."""

from __future__ import annotations

import asyncio

import pytest
from memeforge_common.settings import Settings
from memeforge_renderer import engine
from memeforge_renderer.pool import PoolCaches, RenderPool

pytestmark = pytest.mark.unit


CONFIGURED = {
    "template": 7_000_000,
    "animation": 6_000_000,
    "glyph": 3_000_000,
    "font": 4_000_000,
    "token": 2_000_000,
    "fit_sizes": 90_000,
    "fit_geometry": 90_000,
    **{f"kern_{name}": 50_000 for name in engine.typeface.faces()},
}


async def test_each_pool_process_sizes_every_cache_from_the_settings() -> None:
    """docs/architecture.md "Limits": caches "set by the pool initializer"."""
    settings = Settings(
        decoded_template_cache_bytes=7_000_000,
        animation_cache_bytes=6_000_000,
        glyph_cache_bytes=3_000_000,
        font_cache_bytes=4_000_000,
        token_cache_bytes=2_000_000,
        kern_cache_bytes=50_000,
        fit_cache_bytes=90_000,
    )
    pool = RenderPool(1, PoolCaches.from_settings(settings))
    await pool.start()
    try:
        async with pool.process() as process:
            budgets = await process.call(engine.cache_budgets)
        assert budgets == CONFIGURED
    finally:
        await pool.close()
    assert engine.cache_budgets() != CONFIGURED  # this process was never configured


async def test_animated_renders_hold_at_most_half_the_processes() -> None:
    """A second animated job waits for the first while a still job still gets a process."""
    pool = RenderPool(2)
    await pool.start()
    try:
        assert pool.animated_share == 1
        async with pool.process(animated=True):
            second = asyncio.create_task(_hold(pool, animated=True))
            for _ in range(20):
                await asyncio.sleep(0)
            assert not second.done()  # waiting for the animated share, not for a process
            async with pool.process() as process:  # the still job is not starved
                assert process is not None
            assert not second.done()
        await second  # runs once the first animation is done
    finally:
        await pool.close()


async def _hold(pool: RenderPool, *, animated: bool) -> None:
    async with pool.process(animated=animated):
        pass

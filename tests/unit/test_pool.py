"""The renderer's process pool applies the cache budgets from the settings."""

from __future__ import annotations

import asyncio

import pytest
from memeforge_common.settings import Settings
from memeforge_renderer import engine
from memeforge_renderer.pool import PoolCaches, RenderPool

pytestmark = pytest.mark.unit


def _budgets() -> tuple[int, int]:
    return engine.TEMPLATES.max_bytes, engine.GLYPHS.max_bytes


async def test_each_pool_process_sizes_its_caches_from_the_settings() -> None:
    """docs/architecture.md "Limits": caches "set by the pool initializer"."""
    settings = Settings(decoded_template_cache_bytes=7_000_000, glyph_cache_bytes=3_000_000)
    caches = PoolCaches(settings.decoded_template_cache_bytes, settings.glyph_cache_bytes)
    pool = RenderPool(1, caches)
    await pool.start()
    try:
        async with pool.process() as executor:
            budgets = await asyncio.get_running_loop().run_in_executor(executor, _budgets)
        assert budgets == (7_000_000, 3_000_000)
    finally:
        await pool.close()
    assert _budgets() != (7_000_000, 3_000_000)  # this process was never configured

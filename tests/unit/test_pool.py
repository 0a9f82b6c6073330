"""The renderer's process pool applies the cache budgets from the settings."""

from __future__ import annotations

import pytest
from memeforge_common.settings import Settings
from memeforge_renderer import engine
from memeforge_renderer.pool import PoolCaches, make_pool

pytestmark = pytest.mark.unit


def _budgets() -> tuple[int, int]:
    return engine.TEMPLATES.max_bytes, engine.GLYPHS.max_bytes


def test_each_pool_process_sizes_its_caches_from_the_settings() -> None:
    settings = Settings(decoded_template_cache_bytes=7_000_000, glyph_cache_bytes=3_000_000)
    caches = PoolCaches(settings.decoded_template_cache_bytes, settings.glyph_cache_bytes)
    with make_pool(1, caches) as pool:
        assert pool.submit(_budgets).result(timeout=120) == (7_000_000, 3_000_000)
    assert _budgets() != (7_000_000, 3_000_000)  # this process was never configured

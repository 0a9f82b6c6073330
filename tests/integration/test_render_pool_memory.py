"""Issue #18: 2,000 memes with private-use and random Unicode captions, rendered by a
real pool process: its RSS growth after warm-up stays under the engine's cache budgets
(plus a stated slack for the allocator). The RSS curve is printed (see it with -s)."""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest
from memeforge_common.models import RenderSpec, TextBox
from memeforge_renderer import engine
from memeforge_renderer.pool import PoolCaches, RenderPool, render_in_pool
from PIL import Image

pytestmark = pytest.mark.integration

MEMES = 2000
WARM_UP = 100
EVERY = 250
CACHES = PoolCaches(
    decoded_template_bytes=2 * 1024 * 1024,
    glyph_bytes=8 * 1024 * 1024,
    font_bytes=8 * 1024 * 1024,
    token_bytes=4 * 1024 * 1024,
    kern_bytes=512 * 1024,
    fit_bytes=512 * 1024,
)
SLACK = 16 * 1024 * 1024
"""Heap fragmentation and allocator arenas on top of what the caches hold."""
PLANES = (0xE000, 0xF0000, 0x100000, 0x10000, 0x1D400, 0x0400, 0x4E00, 0x20000, 0x0600)


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _caption(rng: random.Random) -> str:
    words = []
    for _ in range(5):  # ~40 characters: private-use and random planes
        base = rng.choice(PLANES)
        words.append("".join(chr(base + rng.randrange(0x2000)) for _ in range(8)))
    return " ".join(words)


def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (320, 240), (40, 40, 120)).save(out, "JPEG")
    return out.getvalue()


def _budget_total(budgets: dict[str, int]) -> int:
    return sum(budgets.values())


async def test_random_unicode_captions_keep_pool_rss_under_the_cache_budget() -> None:
    rng = random.Random(2000)
    template = _jpeg()
    pool = RenderPool(1, CACHES, max_tasks_per_process=MEMES + 1)
    await pool.start()
    try:
        (pid,) = pool.pids
        curve: list[tuple[int, int]] = []
        baseline = 0
        for i in range(1, MEMES + 1):
            spec = RenderSpec(
                boxes=(
                    TextBox(text=_caption(rng), x=0, y=0, width=1, height=0.45),
                    TextBox(text=_caption(rng), x=0, y=0.55, width=1, height=0.45),
                )
            )
            async with pool.process() as process:
                out = await render_in_pool(
                    process, template, spec, template_key="t", etag='"1"', max_source_pixels=10**6
                )
                if i == WARM_UP:
                    baseline = _rss(pid)
                if i % EVERY == 0:
                    curve.append((i, _rss(pid)))
                    if i == MEMES:
                        sizes = await process.call(engine.cache_sizes)
                        budgets = await process.call(engine.cache_budgets)
            assert out.width == 320
        assert pool.pids == [pid]  # one process rendered them all (no retirement)
    finally:
        await pool.close()
    budget = _budget_total(budgets)
    print(f"\nRSS after warm-up ({WARM_UP} memes): {baseline / 2**20:.1f} MiB")
    print(f"cache budgets {budget / 2**20:.1f} MiB + slack {SLACK / 2**20:.0f} MiB")
    for n, rss in curve:
        print(
            f"  {n:5d} memes  RSS {rss / 2**20:7.1f} MiB"
            f"  growth {(rss - baseline) / 2**20:6.1f} MiB"
        )
    print("cache sizes at the end (MiB):", {k: round(v / 2**20, 2) for k, v in sizes.items()})
    assert all(sizes[name] <= budgets[name] for name in sizes)
    assert sizes["token"] > budgets["token"] / 2  # the captions filled it: it evicted
    assert max(rss for _, rss in curve) - baseline <= budget + SLACK

"""The renderer's self-healing pool (memeforge_renderer.pool.RenderPool), with real processes:
a dead or abandoned pool process is replaced, the pool never stays broken."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
import time
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest
from memeforge_common.models import RenderSpec, TextBox
from memeforge_renderer import engine
from memeforge_renderer.pool import RenderPool, render_in_pool
from PIL import Image

from devenv.run.proc import wait_until

pytestmark = pytest.mark.integration


def _gone(pid: int) -> bool:
    """Exited (and reaped) or a zombie: not running any more."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] in "ZX"
    except (FileNotFoundError, IndexError):
        return True


def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (320, 240), (10, 90, 30)).save(out, "JPEG")
    return out.getvalue()


async def _render(pool: RenderPool) -> engine.RenderOutput:
    spec = RenderSpec(boxes=(TextBox(text="still here", x=0, y=0, width=1, height=0.3),))
    async with pool.process() as process:
        return await render_in_pool(
            process, _jpeg(), spec, template_key="t", etag='"1"', max_source_pixels=10**7
        )


@pytest.fixture
async def pool() -> RenderPool:
    p = RenderPool(2)
    await p.start()
    yield p  # type: ignore[misc]
    await p.close()


async def _hang(pool: RenderPool, started: asyncio.Event) -> None:
    async with pool.process() as process:
        started.set()
        await process.call(time.sleep, 600)


async def test_a_killed_pool_process_fails_only_its_render_and_is_replaced(
    pool: RenderPool,
) -> None:
    started = asyncio.Event()
    hung = asyncio.create_task(_hang(pool, started))
    await started.wait()
    (victim,) = pool.busy_pids
    os.kill(victim, signal.SIGKILL)
    with pytest.raises(BrokenProcessPool):
        await hung
    # Every later render works; the pool has two live processes again, one of them new.
    await pool.replacements()
    outputs = await asyncio.gather(*(_render(pool) for _ in range(4)))
    assert all(o.width == 320 for o in outputs)
    assert pool.replaced == 1
    assert len(pool.pids) == 2
    assert victim not in pool.pids
    assert not any(_gone(pid) for pid in pool.pids)


async def test_an_abandoned_render_has_its_process_killed_and_replaced(pool: RenderPool) -> None:
    started = asyncio.Event()
    hung = asyncio.create_task(_hang(pool, started))
    await started.wait()
    (victim,) = pool.busy_pids
    hung.cancel()  # what the queue loop's job deadline does
    with pytest.raises(asyncio.CancelledError):
        await hung
    await asyncio.to_thread(
        wait_until, lambda: _gone(victim), timeout=30, what="killed process", proc=None
    )
    await pool.replacements()
    assert (await _render(pool)).width == 320
    assert pool.replaced == 1
    assert victim not in pool.pids
    assert len(pool.pids) == 2


async def test_a_process_is_retired_after_its_task_budget() -> None:
    pool = RenderPool(1, max_tasks_per_process=2)
    await pool.start()
    try:
        (first,) = pool.pids
        await _render(pool)
        await _render(pool)
        assert (await _render(pool)).width == 320
        (second,) = pool.pids
        assert second != first
        assert pool.replaced == 0
        await asyncio.to_thread(
            wait_until, lambda: _gone(first), timeout=30, what="retired process", proc=None
        )
    finally:
        await pool.close()


async def test_bad_input_keeps_the_process(pool: RenderPool) -> None:
    before = pool.pids
    spec = RenderSpec(boxes=(TextBox(text="x", x=0, y=0, width=1, height=1),))
    with pytest.raises(engine.CorruptImage):
        async with pool.process() as process:
            await render_in_pool(
                process,
                b"not an image",
                spec,
                template_key="b",
                etag='"1"',
                max_source_pixels=10**7,
            )
    assert pool.pids == before
    assert pool.replaced == 0


_ORPHAN_SCRIPT = """
import asyncio
from memeforge_renderer.pool import RenderPool

async def main() -> None:
    pool = RenderPool(2)
    await pool.start()
    print(" ".join(str(pid) for pid in pool.pids), flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


def test_pool_processes_die_with_a_sigkilled_renderer() -> None:
    """kill -9 of the renderer's main process (the OOM killer's way) leaves no pool process
    behind: the kernel kills them too (PR_SET_PDEATHSIG), instead of orphans holding memory."""
    main = subprocess.Popen(
        [sys.executable, "-c", _ORPHAN_SCRIPT], stdout=subprocess.PIPE, text=True
    )
    try:
        assert main.stdout is not None
        pids = [int(pid) for pid in main.stdout.readline().split()]
        assert len(pids) == 2
        assert not any(_gone(pid) for pid in pids)
        main.send_signal(signal.SIGKILL)
        main.wait(timeout=30)
        wait_until(lambda: all(_gone(pid) for pid in pids), timeout=30, what="pool exit", proc=None)
    finally:
        main.kill()
        main.wait()

"""The renderer's RENDERING mark: only for a render still running, never racing the end."""

from __future__ import annotations

import asyncio

import pytest
from memeforge_renderer.marking import RenderingMark

pytestmark = pytest.mark.unit


class Writes:
    """Stands in for the RENDERING write: records what happened, in order."""

    def __init__(self, *, hold: bool = False, fail: bool = False) -> None:
        self.log: list[str] = []
        self.hold = asyncio.Event()
        if not hold:
            self.hold.set()
        self.fail = fail
        self.started = asyncio.Event()

    async def rendering(self) -> bool:
        self.log.append("mark started")
        self.started.set()
        await self.hold.wait()
        if self.fail:
            raise ConnectionError("DynamoDB unreachable")
        self.log.append("mark written")
        return True


async def test_a_render_done_before_the_delay_writes_no_mark() -> None:
    writes = Writes()
    async with RenderingMark(writes.rendering, after_s=60) as mark:
        await asyncio.sleep(0)  # the render
    assert writes.log == []
    assert not mark.written


async def test_a_render_still_running_after_the_delay_is_marked() -> None:
    writes = Writes()
    async with RenderingMark(writes.rendering, after_s=0.001) as mark:
        await writes.started.wait()  # the render outlasts the delay
        await asyncio.sleep(0)
    assert writes.log == ["mark started", "mark written"]
    assert mark.written


async def test_settle_waits_for_a_mark_in_flight_instead_of_cancelling_it() -> None:
    """The ending write comes after the mark's write has ended, never beside it."""
    writes = Writes(hold=True)
    mark = RenderingMark(writes.rendering, after_s=0)
    async with mark:
        await writes.started.wait()
        # The render ends while the mark's write is on the wire: leaving the block
        # must wait for it, then the ending may go.
        asyncio.get_running_loop().call_later(0.01, writes.hold.set)
    writes.log.append("ending written")
    assert writes.log == ["mark started", "mark written", "ending written"]


async def test_a_failed_mark_does_not_fail_the_render() -> None:
    writes = Writes(fail=True)
    async with RenderingMark(writes.rendering, after_s=0):
        await writes.started.wait()
    assert writes.log == ["mark started"]


async def test_a_render_that_raises_still_settles_the_mark() -> None:
    writes = Writes()
    mark = RenderingMark(writes.rendering, after_s=60)
    with pytest.raises(RuntimeError):
        async with mark:
            raise RuntimeError("render failed")
    await asyncio.sleep(0)
    assert writes.log == []
    assert not mark.written

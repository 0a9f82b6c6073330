"""The RENDERING mark: written only for a render still running after a moment.

A fast render (most of them) goes PENDING → DONE | FAILED in one conditional write, which
saves one write per meme; a slow one (an animation, a loaded machine) still shows
RENDERING to whoever watches it, and the mark moves ``updated_at``, so the sweeper does
not take a render still running for a lost one.

The mark never races the ending: ``settle()`` (before the ending write) cancels a mark
not yet begun and awaits one in flight, so the two writes are never concurrent and the
ending is always the later one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from types import TracebackType

log = logging.getLogger("memeforge.renderer")


class RenderingMark:
    """``async with RenderingMark(write, after_s):`` around the render; on exit (whatever
    the outcome) the mark is settled, and the ending write may follow."""

    def __init__(self, write: Callable[[], Awaitable[object]], after_s: float) -> None:
        self._write = write
        self._after_s = after_s
        self._task: asyncio.Task[None] | None = None
        self._writing = False

    async def __aenter__(self) -> RenderingMark:
        self._task = asyncio.create_task(self._mark_later())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.settle()

    @property
    def written(self) -> bool:
        """Whether the mark's write was started (it has ended once settled)."""
        return self._writing

    async def settle(self) -> None:
        """Cancel the mark if its write has not begun; else wait for the write to end
        (never cancelled in flight). A failed mark is logged: the ending still follows."""
        task = self._task
        if task is None:
            return
        if not self._writing:
            task.cancel()
        # asyncio.wait, not await: neither the mark's cancellation nor its error is ours.
        await asyncio.wait({task})
        if not task.cancelled() and task.exception() is not None:
            log.warning("RENDERING mark not written: %r", task.exception())

    async def _mark_later(self) -> None:
        await asyncio.sleep(self._after_s)
        self._writing = True  # from here on, settle() waits for the write instead
        await self._write()

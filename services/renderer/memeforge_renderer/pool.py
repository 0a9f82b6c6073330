"""The process pool that runs the pure engine off the event loop, and heals itself.

The pool is N single-process executors ("slots"); a render holds one slot for its whole
job. A slot whose render was abandoned (the queue loop's job deadline cancelled it) has
its process killed, so it stops burning CPU and memory; a slot whose process died
(OOM-killed, SIGKILL) raises BrokenProcessPool for that render only. Either way a fresh
process takes the slot and the job is retried; the pool never stays broken. After
``max_tasks_per_process`` renders a process is retired and replaced, so whatever one
accumulates (fragmented heap, caches) is bounded in time too.

Pool processes ignore SIGTERM/SIGINT: on shutdown the parent stops receiving, lets
in-flight renders finish, then closes the pool, so a drain never kills a render halfway.
They do die with their parent: if the renderer's main process is SIGKILLed (OOM killer,
``kill -9``), the kernel SIGKILLs them (Linux ``PR_SET_PDEATHSIG``), since a spawned child
holds its own end of the job pipe and would otherwise wait on it for ever as an orphan.

Each pool process keeps its own cache of decoded templates keyed by (S3 key, ETag)
(engine/cache.py). ``render_in_pool`` first sends only the key and ETag; the process
that takes the job renders from its cache, or answers TemplateNotCached and the job is
sent again with the bytes. A hit therefore never ships the template through the pipe.

Animated renders (a 300-frame GIF takes seconds where a still takes milliseconds) hold
at most half the processes (at least one): the other half stays free for still jobs,
so a burst of long GIFs never blocks the queue behind it. A weight inside each renderer,
rather than a render queue of their own, because it needs no second queue, DLQ, scaler
and routing in the consumer, and an idle share is never wasted: still jobs use every
process when no animation is running.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import math
import multiprocessing
import os
import signal
from collections.abc import AsyncIterator
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import asynccontextmanager, nullcontext, suppress
from dataclasses import dataclass
from functools import partial

from memeforge_common.animation import AnimationLimits
from memeforge_common.models import RenderSpec
from memeforge_common.settings import Settings

from memeforge_renderer import engine


@dataclass(frozen=True)
class PoolCaches:
    """Byte budgets of each pool process's own caches (None: the engine's default)."""

    decoded_template_bytes: int | None = None
    animation_bytes: int | None = None
    glyph_bytes: int | None = None
    font_bytes: int | None = None
    token_bytes: int | None = None
    kern_bytes: int | None = None
    fit_bytes: int | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> PoolCaches:
        return cls(
            decoded_template_bytes=settings.decoded_template_cache_bytes,
            animation_bytes=settings.animation_cache_bytes,
            glyph_bytes=settings.glyph_cache_bytes,
            font_bytes=settings.font_cache_bytes,
            token_bytes=settings.token_cache_bytes,
            kern_bytes=settings.kern_cache_bytes,
            fit_bytes=settings.fit_cache_bytes,
        )


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(parent_pid: int) -> None:
    """Have the kernel SIGKILL this process when its parent dies (Linux; a no-op elsewhere).

    The signal follows the parent *thread* that forked us: the pool starts its processes
    from the event loop's thread, which lives as long as the renderer does. A parent that
    died before the call is caught by comparing the parent pid."""
    if os.uname().sysname != "Linux":
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent_pid:
        os._exit(1)  # orphaned already: nothing would ever send us work


def _init_pool_process(caches: PoolCaches, parent_pid: int) -> None:
    die_with_parent(parent_pid)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    engine.configure(
        template_cache_bytes=caches.decoded_template_bytes,
        animation_cache_bytes=caches.animation_bytes,
        glyph_cache_bytes=caches.glyph_bytes,
        font_cache_bytes=caches.font_bytes,
        token_cache_bytes=caches.token_bytes,
        kern_cache_bytes=caches.kern_bytes,
        fit_cache_bytes=caches.fit_bytes,
    )
    engine.warm_up()


def available_cores() -> int:
    """Cores this process may use: CPU pinning (cpusets) and the cgroup v2 CPU quota
    (a Kubernetes CPU limit), whichever is smaller."""
    try:
        cores = max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        cores = max(1, os.cpu_count() or 1)
    quota = _cgroup_cpu_quota()
    return min(cores, quota) if quota else cores


def _cgroup_cpu_quota(path: str = "/sys/fs/cgroup/cpu.max") -> int | None:
    """``cpu.max`` is "QUOTA PERIOD" or "max PERIOD"; None when unlimited or absent."""
    try:
        with open(path) as f:
            quota, period = f.read().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return max(1, math.ceil(int(quota) / int(period)))


MAX_TASKS_PER_PROCESS = 1000

log = logging.getLogger("memeforge.renderer")


@dataclass(eq=False)
class _Slot:
    executor: ProcessPoolExecutor
    pid: int
    tasks: int = 0


class RenderPool:
    """``async with pool.process() as executor``: one pool process for one job."""

    def __init__(
        self,
        processes: int,
        caches: PoolCaches | None = None,
        *,
        max_tasks_per_process: int = MAX_TASKS_PER_PROCESS,
    ) -> None:
        self.processes = processes or available_cores()
        self.caches = caches or PoolCaches()
        self.max_tasks_per_process = max_tasks_per_process
        self.replaced = 0
        """Processes replaced after a death or an abandoned render (not retirements)."""
        self._free: asyncio.Queue[_Slot] = asyncio.Queue()
        self._slots: set[_Slot] = set()
        self._busy: set[_Slot] = set()
        self._starting: set[asyncio.Task[None]] = set()
        self.animated_share = max(1, self.processes // 2)
        self._animated = asyncio.Semaphore(self.animated_share)

    async def start(self) -> None:
        await asyncio.gather(*(self._add() for _ in range(self.processes)))

    @property
    def pids(self) -> list[int]:
        return sorted(slot.pid for slot in self._slots)

    @property
    def busy_pids(self) -> list[int]:
        return sorted(slot.pid for slot in self._busy)

    @asynccontextmanager
    async def process(self, *, animated: bool = False) -> AsyncIterator[Executor]:
        """A process for one render; an ``animated`` one waits for a share as well."""
        async with self._animated if animated else nullcontext():
            slot = await self._free.get()
            self._busy.add(slot)
            healthy = False
            try:
                yield slot.executor
                healthy = True
            except BrokenProcessPool:
                log.warning("render process %d died; replacing it", slot.pid)
                raise
            except asyncio.CancelledError:
                log.warning("render abandoned; killing its process %d and replacing it", slot.pid)
                raise
            except BaseException:
                healthy = True  # bad input (RenderError) and the like: the process is fine
                raise
            finally:
                self._release(slot, healthy)

    async def replacements(self) -> None:
        """Wait until every replacement process being started has started."""
        for task in list(self._starting):
            with suppress(Exception):
                await task

    async def close(self) -> None:
        """Wait for what is running, then stop every process."""
        await self.replacements()
        slots, self._slots = list(self._slots), set()
        await asyncio.gather(*(asyncio.to_thread(s.executor.shutdown) for s in slots))

    def _release(self, slot: _Slot, healthy: bool) -> None:
        self._busy.discard(slot)
        slot.tasks += 1
        if healthy and slot.tasks < self.max_tasks_per_process:
            self._free.put_nowait(slot)
            return
        self._slots.discard(slot)
        if not healthy:
            self.replaced += 1
            with suppress(ProcessLookupError):
                os.kill(slot.pid, signal.SIGKILL)
        slot.executor.shutdown(wait=False, cancel_futures=True)
        task = asyncio.get_running_loop().create_task(self._add())
        self._starting.add(task)
        task.add_done_callback(self._starting.discard)

    async def _add(self) -> None:
        executor = ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_pool_process,
            initargs=(self.caches, os.getpid()),
        )
        # Starts the process (and its warm-up) and learns its pid, to kill it if needed.
        pid = await asyncio.get_running_loop().run_in_executor(executor, os.getpid)
        slot = _Slot(executor, pid)
        self._slots.add(slot)
        self._free.put_nowait(slot)


async def render_in_pool(
    pool: Executor,
    template: bytes,
    spec: RenderSpec,
    *,
    template_key: str,
    etag: str,
    max_source_pixels: int,
    animation_limits: AnimationLimits | None = None,
) -> engine.RenderOutput:
    """Render in the pool, sending the template bytes only to a process that lacks them.

    Safe with a stale ETag: ``template`` is whatever S3 returned for ``template_key``
    (at least as new as ``etag``), so an entry cached under (key, etag) is never older
    than the version the job asked for. Raises engine.RenderError for bad input.
    """
    loop = asyncio.get_running_loop()
    render = partial(
        engine.render,
        spec=spec,
        template_key=template_key,
        etag=etag,
        max_source_pixels=max_source_pixels,
        animation_limits=animation_limits,
    )
    try:
        return await loop.run_in_executor(pool, partial(render, None))
    except engine.TemplateNotCached:
        return await loop.run_in_executor(pool, partial(render, template))

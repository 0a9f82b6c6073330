"""The process pool that runs the pure engine off the event loop, and heals itself.

The pool is N processes ("slots"); a render holds one slot for its whole job. A slot
whose render was abandoned (the queue loop's job deadline cancelled it) has its process
killed, so it stops burning CPU and memory; a slot whose process died
(OOM-killed, SIGKILL) raises BrokenProcessPool for that render only. Either way a fresh
process takes the slot and the job is retried; the pool never stays broken. After
``max_tasks_per_process`` renders a process is retired and replaced, so whatever one
accumulates (fragmented heap, caches) is bounded in time too.

Each process is spawned with one socket to it, read and written from the event loop: a
call is one pickled ``(function, args)`` out and one pickled result (or exception) back,
each framed by its length. No executor threads, call queue or wake-up pipes sit between
a render and its process (``ProcessPoolExecutor`` spent ~0.3 ms of the renderer's CPU
per call in them); a process that dies closes its socket, which fails that render with
``BrokenProcessPool`` as before.

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
import pickle
import signal
import socket
import struct
from collections.abc import AsyncIterator, Callable
from concurrent.futures.process import BrokenProcessPool
from contextlib import asynccontextmanager, nullcontext, suppress
from dataclasses import dataclass, field
from functools import partial
from multiprocessing.connection import Connection
from typing import Any, Protocol, TypeVar

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

T = TypeVar("T")
_LENGTH = struct.Struct("!Q")


def _recv_exactly(sock: socket.socket, size: int) -> bytes | None:
    """``size`` bytes from ``sock``, or None at end of stream."""
    data = bytearray(size)
    view, got = memoryview(data), 0
    while got < size:
        n = sock.recv_into(view[got:])
        if n == 0:
            return None
        got += n
    return bytes(data)


def _serve(conn: Connection, caches: PoolCaches, parent_pid: int) -> None:
    """A pool process: run each call that arrives on the socket, until it closes."""
    _init_pool_process(caches, parent_pid)
    sock = socket.socket(fileno=os.dup(conn.fileno()))
    conn.close()
    while (header := _recv_exactly(sock, _LENGTH.size)) is not None:
        request = _recv_exactly(sock, _LENGTH.unpack(header)[0])
        if request is None:
            return
        function, args = pickle.loads(request)
        try:
            reply: tuple[bool, object] = (True, function(*args))
        except Exception as err:  # the caller's to handle (RenderError and the like)
            reply = (False, err)
        try:
            data = pickle.dumps(reply, pickle.HIGHEST_PROTOCOL)
        except Exception as err:
            data = pickle.dumps((False, RuntimeError(f"unpicklable result: {err!r}")))
        sock.sendall(_LENGTH.pack(len(data)) + data)


class Caller(Protocol):
    """What runs a function for render_in_pool: a PoolProcess (or, in tests, this process)."""

    async def call(self, function: Callable[..., T], *args: Any) -> T: ...


@dataclass(eq=False)
class PoolProcess:
    """One spawned render process and the socket to it; one call at a time."""

    process: Any  # multiprocessing's SpawnProcess
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    tasks: int = field(default=0, init=False)

    @property
    def pid(self) -> int:
        return int(self.process.pid)

    @classmethod
    async def start(cls, caches: PoolCaches) -> PoolProcess:
        """Spawn a process and wait until it has warmed up and answers."""
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe(duplex=True)  # a Unix socket pair
        process = context.Process(target=_serve, args=(theirs, caches, os.getpid()))
        process.start()
        theirs.close()
        sock = socket.socket(fileno=os.dup(ours.fileno()))
        ours.close()
        reader, writer = await asyncio.open_connection(sock=sock)
        started = cls(process, reader, writer)
        await started.call(os.getpid)
        return started

    async def call(self, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` in the process: its result, or the exception it raised.
        Raises BrokenProcessPool if the process died."""
        data = pickle.dumps((function, args), pickle.HIGHEST_PROTOCOL)
        self.writer.write(_LENGTH.pack(len(data)) + data)
        try:
            await self.writer.drain()
            header = await self.reader.readexactly(_LENGTH.size)
            ok, value = pickle.loads(await self.reader.readexactly(_LENGTH.unpack(header)[0]))
        except (asyncio.IncompleteReadError, ConnectionError) as err:
            raise BrokenProcessPool(f"render process {self.pid} died") from err
        if ok:
            return value  # type: ignore[no-any-return]
        raise value

    def kill(self) -> None:
        with suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)

    def stop(self) -> None:
        """Close the socket: an idle process exits at once (reaped by close() or by
        multiprocessing at the next start)."""
        self.writer.close()


class RenderPool:
    """``async with pool.process() as process``: one pool process for one job."""

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
        self._free: asyncio.Queue[PoolProcess] = asyncio.Queue()
        self._slots: set[PoolProcess] = set()
        self._busy: set[PoolProcess] = set()
        self._stopped: list[PoolProcess] = []
        self._idle = asyncio.Event()
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
    async def process(self, *, animated: bool = False) -> AsyncIterator[PoolProcess]:
        """A process for one render; an ``animated`` one waits for a share as well."""
        async with self._animated if animated else nullcontext():
            slot = await self._free.get()
            self._busy.add(slot)
            healthy = False
            try:
                yield slot
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
        while self._busy:
            self._idle.clear()
            await self._idle.wait()
        await self.replacements()
        slots, self._slots = list(self._slots), set()
        for slot in slots:
            slot.stop()
        stopped, self._stopped = slots + self._stopped, []
        await asyncio.gather(*(asyncio.to_thread(s.process.join) for s in stopped))

    def _release(self, slot: PoolProcess, healthy: bool) -> None:
        self._busy.discard(slot)
        if not self._busy:
            self._idle.set()
        slot.tasks += 1
        if healthy and slot.tasks < self.max_tasks_per_process:
            self._free.put_nowait(slot)
            return
        self._slots.discard(slot)
        if not healthy:
            self.replaced += 1
            slot.kill()
        slot.stop()
        self._stopped.append(slot)
        task = asyncio.get_running_loop().create_task(self._add())
        self._starting.add(task)
        task.add_done_callback(self._starting.discard)

    async def _add(self) -> None:
        slot = await PoolProcess.start(self.caches)
        self._slots.add(slot)
        self._free.put_nowait(slot)


async def render_in_pool(
    pool: Caller,
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
    render = partial(
        engine.render,
        spec=spec,
        template_key=template_key,
        etag=etag,
        max_source_pixels=max_source_pixels,
        animation_limits=animation_limits,
    )
    try:
        return await pool.call(render, None)
    except engine.TemplateNotCached:
        return await pool.call(render, template)

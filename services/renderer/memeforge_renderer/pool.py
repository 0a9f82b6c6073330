"""The process pool that runs the pure engine off the event loop.

Pool processes ignore SIGTERM/SIGINT: on shutdown the parent stops receiving, lets
in-flight renders finish, then closes the pool, so a drain never kills a render halfway.

Each pool process keeps its own cache of decoded templates keyed by (S3 key, ETag)
(engine/cache.py). ``render_in_pool`` first sends only the key and ETag; the process
that takes the job renders from its cache, or answers TemplateNotCached and the job is
sent again with the bytes. A hit therefore never ships the template through the pipe.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import os
import signal
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial

from memeforge_common.models import RenderSpec

from memeforge_renderer import engine


@dataclass(frozen=True)
class PoolCaches:
    """Byte budgets of each pool process's own caches (None: the engine's default)."""

    decoded_template_bytes: int | None = None
    glyph_bytes: int | None = None


def _init_pool_process(caches: PoolCaches) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    engine.configure(
        template_cache_bytes=caches.decoded_template_bytes, glyph_cache_bytes=caches.glyph_bytes
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


def make_pool(processes: int, caches: PoolCaches | None = None) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(
        max_workers=processes or available_cores(),
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_pool_process,
        initargs=(caches or PoolCaches(),),
    )


async def render_in_pool(
    pool: Executor,
    template: bytes,
    spec: RenderSpec,
    *,
    template_key: str,
    etag: str,
    max_source_pixels: int,
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
    )
    try:
        return await loop.run_in_executor(pool, partial(render, None))
    except engine.TemplateNotCached:
        return await loop.run_in_executor(pool, partial(render, template))

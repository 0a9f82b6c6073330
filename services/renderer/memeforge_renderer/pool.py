"""The process pool that runs the pure engine off the event loop.

Pool processes ignore SIGTERM/SIGINT: on shutdown the parent stops receiving, lets
in-flight renders finish, then closes the pool, so a drain never kills a render halfway.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from concurrent.futures import ProcessPoolExecutor

from memeforge_renderer import engine


def _init_pool_process() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    engine.warm_up()


def available_cores() -> int:
    """Cores this process may run on (respects cpusets / container CPU pinning)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def make_pool(processes: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(
        max_workers=processes or available_cores(),
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_pool_process,
    )

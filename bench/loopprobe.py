"""Event-loop stalls, and whether the loop was busy or waiting for a CPU.

A 10 ms sleep that oversleeps by more than 20 ms is a stall. Its record carries the
loop thread's time on a CPU and in the run queue meanwhile (``/proc/.../schedstat``):
a stall that is mostly run-queue wait was the machine's load (the process was ready but
not scheduled), one that is mostly CPU was the process's own work. Used by the bench
processes themselves and, copied beside the trace hooks, inside the services.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

TICK_S = 0.01
LATE_S = 0.02


def _schedstat() -> tuple[int, int]:
    """The calling thread's nanoseconds on a CPU and waiting in the run queue."""
    with open(f"/proc/self/task/{threading.get_native_id()}/schedstat") as f:
        on_cpu, waiting, _ = f.read().split()
    return int(on_cpu), int(waiting)


async def watch(report: Callable[[dict[str, Any]], None]) -> None:
    """Report each stall of the running loop, forever (cancel to stop)."""
    while True:
        t0 = time.monotonic()
        cpu0, runq0 = _schedstat()
        await asyncio.sleep(TICK_S)
        t1 = time.monotonic()
        if t1 - t0 - TICK_S > LATE_S:
            cpu1, runq1 = _schedstat()
            report(
                {
                    "op": "stall",
                    "t0": t0 + TICK_S,
                    "t1": t1,
                    "cpu_ms": round((cpu1 - cpu0) / 1e6, 1),
                    "runq_ms": round((runq1 - runq0) / 1e6, 1),
                }
            )

"""Run a service module under cProfile timed by this process's CPU clock (not wall
time: a worker's idle wait in epoll costs nothing and must not show).

    python -m bench.cpu_profile OUT.prof memeforge_renderer

The profiler is off until SIGUSR1 and writes OUT.prof (pstats) at SIGUSR2, so only the
window the caller cares about (bench.worker_cpu: while the messages are handled) is in
it. Its overhead (a clock read per call) inflates call-heavy code: read shares, not ms.
"""

from __future__ import annotations

import cProfile
import runpy
import signal
import sys
import time
from types import FrameType


def main() -> None:
    out, module = sys.argv[1], sys.argv[2]
    profiler = cProfile.Profile(time.process_time)

    def start(_sig: int, _frame: FrameType | None) -> None:
        profiler.enable()

    def finish(_sig: int, _frame: FrameType | None) -> None:
        profiler.disable()
        profiler.dump_stats(out)

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, finish)
    sys.argv = [module]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()

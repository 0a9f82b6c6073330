"""Started inside LocalStack's interpreter (``.venv-localstack``, Python 3.13) by the
launcher (``devenv/run/backends/localstack.py``), which puts this folder first on its
PYTHONPATH. It never imports LocalStack; it only sets the interpreter's garbage collector.

Why: CPython's full (generation 2) collections scan every tracked object. LocalStack's
heap is ~240 MiB of mostly long-lived objects from its start-up (service specs, plugins),
so each full collection stops S3 and SQS for ~200 ms of CPU, once every ~40 s under the
bench's load. Real AWS has no such pause: it is an artefact of the test rig.

``MEMEFORGE_LOCALSTACK_GC_FREEZE`` (a file name): once the launcher creates that file
(LocalStack is ready), collect once and ``gc.freeze()`` what is left, so later full
collections scan only what was allocated since; write the number of frozen objects to
``<that file>.done``; from then on, every second, freeze what survived (gc.freeze() only
splices lists, and the young collection before it costs a few ms). The price: a
reference cycle among objects that were once frozen is never collected; it stays in
memory until LocalStack exits.

``MEMEFORGE_LOCALSTACK_GC_LOG`` (a file) and ``MEMEFORGE_LOCALSTACK_GC_LOG_MS``: each
collection that takes longer than that is appended as one JSON line: generation, start
and end (CLOCK_MONOTONIC, the bench's clock too), the collecting thread's CPU time
meanwhile (the rest it waited for a CPU), objects collected, and the process's RSS.
"""

from __future__ import annotations

import gc
import json
import os
import threading
import time
from typing import Any

FREEZE_POLL_S = 0.05
FREEZE_GIVE_UP_S = 600.0  # the launcher gave up long before
REFREEZE_EVERY_S = 1.0


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _log_slow_collections(path: str, over_s: float) -> None:
    started: list[float] = []

    def record(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[:] = [time.monotonic(), time.thread_time()]
            return
        if not started:
            return
        t0, cpu0 = started
        t1 = time.monotonic()
        if t1 - t0 <= over_s:
            return
        line = {
            "gen": info["generation"],
            "t0": t0,
            "t1": t1,
            "cpu_ms": round((time.thread_time() - cpu0) * 1000, 1),
            "collected": info["collected"],
            "rss_mib": round(_rss_mib(), 1),
        }
        with open(path, "a") as out:
            out.write(json.dumps(line) + "\n")

    gc.callbacks.append(record)


def _freeze_when_told(trigger: str) -> None:
    def wait_then_freeze() -> None:
        deadline = time.monotonic() + FREEZE_GIVE_UP_S
        while not os.path.exists(trigger):
            if time.monotonic() > deadline:
                return
            time.sleep(FREEZE_POLL_S)
        gc.collect()  # the start-up's garbage is not kept forever
        gc.freeze()
        with open(f"{trigger}.tmp", "w") as out:
            out.write(str(gc.get_freeze_count()))
        os.replace(f"{trigger}.tmp", f"{trigger}.done")  # the launcher never reads half
        # Services load lazily on their first requests, and the heap keeps growing: every
        # second, what survived is frozen too (after a young collection, so young garbage
        # is not), and a full collection only ever scans the last second's survivors.
        while True:
            time.sleep(REFREEZE_EVERY_S)
            gc.collect(1)
            gc.freeze()

    threading.Thread(target=wait_then_freeze, name="memeforge-gc-freeze", daemon=True).start()


_log = os.environ.get("MEMEFORGE_LOCALSTACK_GC_LOG")
if _log:
    _over_ms = float(os.environ.get("MEMEFORGE_LOCALSTACK_GC_LOG_MS", "20"))
    _log_slow_collections(_log, _over_ms / 1000)
_trigger = os.environ.get("MEMEFORGE_LOCALSTACK_GC_FREEZE")
if _trigger:
    _freeze_when_told(_trigger)

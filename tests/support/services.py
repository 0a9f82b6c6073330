"""One service as a real process on a test's own resources (integration tests)."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from memeforge_common.settings import Settings

from devenv.run.emulator import Emulator
from devenv.run.proc import spawn, stop


@contextmanager
def service_process(
    module: str,
    emulator: Emulator,
    settings: Settings,
    log: Path,
    extra_env: Mapping[str, str] | None = None,
) -> Iterator[None]:
    """``python -m module`` against ``emulator`` with ``settings``' resource names, a short
    long-poll and one render process (and ``extra_env``); output to ``log``; stopped
    (SIGTERM) after."""
    env = emulator.child_env(
        {
            "MEMEFORGE_BUCKET": settings.bucket,
            "MEMEFORGE_TABLE": settings.table,
            "MEMEFORGE_REQUEST_QUEUE": settings.request_queue,
            "MEMEFORGE_RENDER_QUEUE": settings.render_queue,
            "MEMEFORGE_NOTIFICATION_QUEUE": settings.notification_queue,
            "MEMEFORGE_RECEIVE_WAIT_S": "1",
            "MEMEFORGE_RENDER_PROCESSES": "1",
            **(extra_env or {}),
        }
    )
    proc = spawn([sys.executable, "-m", module], env=env, log_path=str(log))
    try:
        yield proc
    finally:
        stop(proc, grace=30)

"""The whole product as real processes, as the e2e tests run it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from devenv.run.proc import free_port, http_ok, wait_until
from devenv.run.stack import Stack, start_stack

# Two render processes fit CI's two cores; a short long-poll keeps shutdown quick. The
# rate limit is on at its default, as for any client (tests/e2e/test_quotas.py tests it).
E2E_SETTINGS = {
    "MEMEFORGE_RENDER_PROCESSES": "2",
    "MEMEFORGE_RECEIVE_WAIT_S": "2",
}


@contextmanager
def running_stack(workdir: Path, **options: Any) -> Iterator[Stack]:
    """start_stack with the e2e settings (plus ``settings``); stops it after, printing each
    service's log tail (pytest shows it for failed tests)."""
    settings = {**E2E_SETTINGS, **options.pop("settings", {})}
    running = start_stack(workdir, settings=settings, **options)
    try:
        yield running
    finally:
        running.stop()
        for name in ("api", "consumer", "renderer", "notifier"):
            log = running.log_path(name)
            if log.exists():
                print(f"--- {name} log (tail) ---\n{log.read_text()[-3000:]}")


def start_api(stack: Stack, name: str, settings: dict[str, str]) -> str:
    """Another api process on the stack (its own port and ``settings``); returns its URL.
    Stop it with ``stack.stop_service(name)``."""
    port = free_port()
    stack.service_env[name] = {**stack.env, "MEMEFORGE_API_PORT": str(port), **settings}
    proc = stack.start_service(name)
    url = f"http://127.0.0.1:{port}"
    wait_until(http_ok(f"{url}/healthz"), timeout=60, what=name, proc=proc)
    return url

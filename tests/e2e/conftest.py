"""The whole product as real processes: emulator, bootstrap, consumer, renderer, api."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from devenv.stack import Stack, start_stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, e2e_backend: str) -> Iterator[Stack]:
    backend = e2e_backend
    workdir = tmp_path_factory.mktemp(f"stack-{backend}")
    running = start_stack(
        workdir,
        backend=backend,
        # Two render processes fit CI's two cores; a short long-poll keeps shutdown quick.
        settings={"MEMEFORGE_RENDER_PROCESSES": "2", "MEMEFORGE_RECEIVE_WAIT_S": "2"},
    )
    try:
        yield running
    finally:
        running.stop()
        for name in ("api", "consumer", "renderer"):
            log = running.log_path(name)
            if log.exists():
                print(f"--- {name} log (tail) ---\n{log.read_text()[-3000:]}")


@pytest.fixture
async def api(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as client:
        yield client

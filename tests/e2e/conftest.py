"""The whole product as real processes: emulator, bootstrap, consumer, renderer, api."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from devenv.run.stack import Stack
from tests.support.stack import running_stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, e2e_backend: str) -> Iterator[Stack]:
    with running_stack(
        tmp_path_factory.mktemp(f"stack-{e2e_backend}"), backend=e2e_backend
    ) as running:
        yield running


@pytest.fixture
async def api(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=stack.api_url, headers=stack.auth_headers, timeout=30
    ) as client:
        yield client

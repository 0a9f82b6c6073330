"""The whole product as real processes: emulator, bootstrap, consumer, renderer, api.

One stack per backend serves every e2e module that needs only a plain stack (starting
one costs ~10 s on moto and ~30 s on LocalStack); each module sees it as a tenant of its
own, with a fresh key, so lists, quotas and rate limits of one module never meet
another's. Modules that need their own settings start their own stack."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from devenv.run.stack import Stack, create_key
from tests.support.stack import running_stack


@pytest.fixture(scope="session")
def shared_stack(tmp_path_factory: pytest.TempPathFactory, e2e_backend: str) -> Iterator[Stack]:
    with running_stack(
        tmp_path_factory.mktemp(f"stack-{e2e_backend}"), backend=e2e_backend
    ) as running:
        yield running


@pytest.fixture(scope="module")
def stack(shared_stack: Stack, request: pytest.FixtureRequest) -> Stack:
    """The backend's shared stack, as a tenant named after the test module."""
    module = request.module.__name__.rsplit(".", 1)[-1]
    tenant = re.sub(r"[^a-z0-9]+", "-", module.lower()).strip("-")[:40]
    key = create_key(shared_stack.env, tenant)
    # A shallow copy: the services and helpers stay the shared stack's, started and
    # stopped on it.
    return dataclasses.replace(shared_stack, api_key=key)


@pytest.fixture
async def api(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=stack.api_url, headers=stack.auth_headers, timeout=30
    ) as client:
        yield client

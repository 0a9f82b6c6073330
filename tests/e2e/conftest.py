"""The whole product as real processes: emulator, bootstrap, consumer, renderer, api.

One stack per backend (per pytest-xdist worker) serves every e2e module that needs only a
plain stack (starting one costs ~10 s on moto and ~30 s on LocalStack); each module sees it
as a tenant of its own, with a fresh key, so lists, quotas and rate limits of one module
never meet another's. Modules that need their own settings start their own stack."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack

import httpx
import pytest

from devenv.run.stack import Stack, create_key
from tests.support.stack import running_stack


@pytest.fixture(scope="session")
def shared_stacks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Stack]]:
    """This process's plain stack of a backend, started when first asked for and kept to the
    end of the session: make test's units are one module on one backend
    (tests/support/workers.py), so a worker moves between backends, and pytest sets the
    session-scoped backend up again at each move; the stacks live here, beside it."""
    with ExitStack() as started:
        stacks: dict[str, Stack] = {}

        def stack_for(backend: str) -> Stack:
            if backend not in stacks:
                workdir = tmp_path_factory.mktemp(f"stack-{backend}")
                stacks[backend] = started.enter_context(running_stack(workdir, backend=backend))
            return stacks[backend]

        yield stack_for


@pytest.fixture(scope="session")
def shared_stack(shared_stacks: Callable[[str], Stack], e2e_backend: str) -> Stack:
    return shared_stacks(e2e_backend)


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

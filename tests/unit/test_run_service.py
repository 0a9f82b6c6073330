"""A worker process's entry point (memeforge_common.worker.run_service)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import pytest
import uvloop
from memeforge_common.worker import run_service

pytestmark = pytest.mark.unit


@pytest.fixture
def root_logging() -> Iterator[None]:
    """run_service configures the root logger; give the other tests theirs back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_a_service_runs_on_uvloop(root_logging: None) -> None:
    """docs/architecture.md "one event loop, uvloop's"."""
    loops: list[asyncio.AbstractEventLoop] = []

    async def run() -> None:
        loops.append(asyncio.get_running_loop())

    run_service("test", run)
    assert len(loops) == 1
    assert isinstance(loops[0], uvloop.Loop)

"""Shared fixtures: one AWS emulator per test session, on loopback, as a real process."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from memeforge_common.aws import AwsClients
from memeforge_common.bootstrap import bootstrap
from memeforge_common.settings import Settings

from devenv.emulator import Emulator, start_emulator

BACKEND = os.environ.get("MEMEFORGE_BACKEND", "moto")


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    emu = start_emulator(BACKEND, workdir=tmp_path_factory.mktemp(f"emulator-{BACKEND}"))
    saved = dict(os.environ)
    # The test process itself talks to the emulator through the standard AWS variables.
    os.environ.clear()
    os.environ.update(emu.child_env())
    try:
        yield emu
    finally:
        os.environ.clear()
        os.environ.update(saved)
        emu.stop()


def unique_settings(**overrides: object) -> Settings:
    """Settings with resource names of their own, so tests never share state."""
    suffix = uuid.uuid4().hex[:8]
    values: dict[str, object] = {
        "bucket": f"mf-test-{suffix}",
        "table": f"mf-test-{suffix}",
        "request_queue": f"mf-test-{suffix}-requests",
        "render_queue": f"mf-test-{suffix}-renders",
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
async def resources(emulator: Emulator) -> Settings:
    """A freshly bootstrapped set of bucket, table and queues (no seed templates)."""
    settings = unique_settings()
    await bootstrap(settings, seed=False)
    return settings


@pytest.fixture
async def aws(resources: Settings) -> AsyncIterator[AwsClients]:
    async with AwsClients.open(resources) as clients:
        yield clients


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]

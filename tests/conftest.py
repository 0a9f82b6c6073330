"""Shared fixtures: one AWS emulator per test session, on loopback, as a real process."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from memeforge_common.aws import AwsClients
from memeforge_common.bootstrap import bootstrap
from memeforge_common.settings import Settings

from devenv.run.emulator import Emulator, start_emulator
from tests.support.backends import required_backends, unavailable
from tests.support.settings import unique_settings

BACKEND = os.environ.get("MEMEFORGE_BACKEND", "moto")
# The end-to-end suite runs on every backend; a backend that is not installed is
# skipped, unless MEMEFORGE_REQUIRE_BACKENDS names it (CI does), then it fails.
E2E_BACKENDS = ("moto", "localstack")


def pytest_report_header() -> list[str]:
    return [
        f"integration emulator backend: {BACKEND}",
        f"e2e backends: {', '.join(E2E_BACKENDS)} (required: {sorted(required_backends()) or '-'})",
    ]


def _unavailable(backend: str) -> str | None:
    if backend != "localstack":
        return None
    from devenv.run.backends.localstack import find_install

    try:
        find_install()
    except RuntimeError as err:
        return str(err)
    return None


# Session scope: pytest then runs every e2e test of one backend before the next backend's,
# so a stack shared per backend (tests/e2e/conftest.py) starts once per backend.
@pytest.fixture(scope="session", params=E2E_BACKENDS)
def e2e_backend(request: pytest.FixtureRequest) -> str:
    backend: str = request.param
    reason = _unavailable(backend)
    if reason is not None:
        unavailable(backend, reason)
    return backend


# Before pytest-xdist's own hook, which turns each test's xdist_group into its unit of work.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """``make test`` runs on two workers (pytest-xdist, ``--dist loadgroup``); a group runs
    on one worker, so what its tests share starts once: every test on a backend's shared
    e2e stack is one group, and any other test goes with its module (and backend), whose
    module-scoped stacks, emulators and browsers then start once too."""
    for item in items:
        if item.get_closest_marker("xdist_group") is not None:
            continue
        callspec = getattr(item, "callspec", None)
        backend = callspec.params.get("e2e_backend") if callspec is not None else None
        fixtures: list[str] = getattr(item, "fixturenames", [])
        if "shared_stack" in fixtures:
            group = f"shared-stack-{backend}"
        else:
            module = getattr(item, "module", None)
            group = module.__name__ if module is not None else item.nodeid
            if backend is not None:
                group = f"{group}-{backend}"
        item.add_marker(pytest.mark.xdist_group(group))


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


@pytest.fixture
async def resources(emulator: Emulator) -> Settings:
    """A freshly bootstrapped set of bucket, table and queues (no seed templates)."""
    settings = unique_settings()
    await bootstrap(settings, seed=False)
    return settings


@pytest.fixture
async def aws(resources: Settings) -> AsyncIterator[AwsClients]:
    async with AwsClients.open(resources, ses=True) as clients:
        yield clients


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]

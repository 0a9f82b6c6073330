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


# make test: two pytest-xdist workers with --dist loadscope, in units of work_unit, the
# longest first (tests/support/workers.py). optionalhook: without xdist, no such hook.
@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    if config.getoption("dist") != "loadscope":
        return None
    from tests.support.workers import make_scheduler

    return make_scheduler(config, log)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--store-durations",
        action="store_true",
        help="write each work unit's seconds to tests/support/durations.json",
    )


def pytest_configure(config: pytest.Config) -> None:
    # Only where every report arrives: the xdist controller, or a run without workers.
    if config.getoption("store_durations") and not hasattr(config, "workerinput"):
        from tests.support.workers import DurationRecorder

        config.pluginmanager.register(DurationRecorder(), "memeforge-durations")


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


@pytest.fixture
def aws_endpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    """AWS's own endpoints for the test, not the emulator's: the session's ``emulator``
    fixture exports AWS_ENDPOINT_URL to the whole worker process, and tests that check
    what botocore resolves on AWS must not see it."""
    for name in list(os.environ):
        if name.startswith("AWS_ENDPOINT_URL"):
            monkeypatch.delenv(name)

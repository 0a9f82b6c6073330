"""How ``make test`` splits the suite across its pytest-xdist workers (tests/conftest.py)."""

from __future__ import annotations

from typing import Any

from xdist.scheduler import LoadScopeScheduling

E2E_BACKENDS = ("moto", "localstack")


def work_unit(nodeid: str) -> str:
    """The unit a test runs in: every e2e test of one backend together, so the backend's
    shared stack (tests/e2e/conftest.py) starts once and the session-scoped backend never
    switches back and forth on a worker; any other test with its module, whose
    module-scoped stacks, emulators and browsers then start once too."""
    path, _, name = nodeid.partition("::")
    if path.startswith("tests/e2e/") and name.endswith("]"):
        params = name[name.rindex("[") + 1 : -1].split("-")
        for backend in E2E_BACKENDS:
            if backend in params:
                return f"e2e-{backend}"
    return path


class ByBackendAndModule(LoadScopeScheduling):
    """xdist's loadscope (each unit whole on one worker, largest first), units by
    ``work_unit``."""

    def _split_scope(self, nodeid: str) -> str:
        return work_unit(nodeid)


def make_scheduler(config: Any, log: Any) -> ByBackendAndModule:
    return ByBackendAndModule(config, log)

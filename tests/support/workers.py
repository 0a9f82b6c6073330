"""How ``make test`` splits the suite across its pytest-xdist workers (tests/conftest.py)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from xdist.scheduler import LoadScopeScheduling

E2E_BACKENDS = ("moto", "localstack")
# Seconds each unit took in a whole make test run (``make test-durations`` rewrites it).
DURATIONS = Path(__file__).with_name("durations.json")
# A unit missing from DURATIONS (a new module) is guessed long, so that it starts early:
# a short unit started early costs nothing, a long one started last is the run's tail.
UNKNOWN_TEST_S = 5.0


def work_unit(nodeid: str) -> str:
    """The unit a test runs in: its module, and an e2e test's backend
    (``tests/e2e/test_pipeline.py[moto]``), so a module's stacks, emulators and browsers
    start once; the plain stack shared by e2e modules is started once per worker and
    backend (tests/e2e/conftest.py)."""
    path, _, name = nodeid.partition("::")
    if path.startswith("tests/e2e/") and name.endswith("]"):
        params = name[name.rindex("[") + 1 : -1].split("-")
        for backend in E2E_BACKENDS:
            if backend in params:
                return f"{path}[{backend}]"
    return path


def load_durations(path: Path = DURATIONS) -> dict[str, float]:
    if not path.exists():
        return {}
    durations: dict[str, float] = json.loads(path.read_text())
    return durations


def expected_s(unit: str, tests: int, durations: Mapping[str, float]) -> float:
    """How long ``unit`` (of ``tests`` tests) should take: its stored time, else a guess."""
    known = durations.get(unit)
    return known if known is not None else tests * UNKNOWN_TEST_S


class LongestFirst(LoadScopeScheduling):
    """xdist's loadscope (each unit whole on one worker, the next one handed to whichever
    worker runs dry), units by ``work_unit``, the longest by DURATIONS first: the last
    units to start are the short ones, so both workers finish at about the same time."""

    def __init__(self, config: Any, log: Any = None) -> None:
        super().__init__(config, log)
        self.durations = load_durations()

    def _split_scope(self, nodeid: str) -> str:
        return work_unit(nodeid)

    def _assign_work_unit(self, node: Any) -> None:
        longest = max(
            self.workqueue, key=lambda u: expected_s(u, len(self.workqueue[u]), self.durations)
        )
        self.workqueue.move_to_end(longest, last=False)
        super()._assign_work_unit(node)


def make_scheduler(config: Any, log: Any) -> LongestFirst:
    return LongestFirst(config, log)


class DurationRecorder:
    """Adds up each unit's setup, call and teardown times and, when the session ends,
    writes them into ``path`` over those units' old times (``pytest --store-durations``,
    in the process that sees every report: the xdist controller, or the only process)."""

    def __init__(self, path: Path = DURATIONS) -> None:
        self.path = path
        self.seconds: Counter[str] = Counter()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.seconds[work_unit(report.nodeid)] += report.duration

    def pytest_sessionfinish(self) -> None:
        durations = load_durations(self.path)
        durations.update({unit: round(s, 1) for unit, s in self.seconds.items()})
        self.path.write_text(json.dumps(dict(sorted(durations.items())), indent=1) + "\n")

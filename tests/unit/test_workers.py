"""make test's split of the suite across pytest-xdist workers (tests/support/workers.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.workers import (
    UNKNOWN_TEST_S,
    DurationRecorder,
    expected_s,
    load_durations,
    work_unit,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("nodeid", "unit"),
    [
        ("tests/e2e/test_pipeline.py::test_x[moto]", "tests/e2e/test_pipeline.py[moto]"),
        (
            "tests/e2e/test_webhooks.py::test_y[localstack-http://10.0.0.1/hook]",
            "tests/e2e/test_webhooks.py[localstack]",
        ),
        ("tests/e2e/test_least_privilege.py::test_z", "tests/e2e/test_least_privilege.py"),
        (
            "tests/e2e/test_least_privilege.py::test_z[api: Scan]",
            "tests/e2e/test_least_privilege.py",
        ),
        ("tests/unit/test_limits.py::test_a[moto]", "tests/unit/test_limits.py"),
    ],
)
def test_an_e2e_test_runs_with_its_module_and_backend_any_other_with_its_module(
    nodeid: str, unit: str
) -> None:
    assert work_unit(nodeid) == unit


def test_a_unit_without_a_stored_time_is_guessed_long() -> None:
    stored = {"tests/unit/test_a.py": 0.5}
    assert expected_s("tests/unit/test_a.py", 40, stored) == 0.5
    assert expected_s("tests/e2e/test_new.py[moto]", 3, stored) == 3 * UNKNOWN_TEST_S


def test_stored_durations_replace_only_the_units_that_ran(tmp_path: Path) -> None:
    path = tmp_path / "durations.json"
    path.write_text(json.dumps({"tests/unit/test_a.py": 1.0, "tests/unit/test_b.py": 2.0}))
    recorder = DurationRecorder(path)
    for when, seconds in (("setup", 0.25), ("call", 3.0), ("teardown", 0.5)):
        report = pytest.TestReport(
            "tests/unit/test_b.py::test_x",
            ("f", 1, "x"),
            {},
            "passed",
            None,
            when,
            duration=seconds,
        )
        recorder.pytest_runtest_logreport(report)
    recorder.pytest_sessionfinish()
    assert load_durations(path) == {"tests/unit/test_a.py": 1.0, "tests/unit/test_b.py": 3.8}

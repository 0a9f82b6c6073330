"""The gathering policy (issue #12): a send waits for messages known to be coming."""

from __future__ import annotations

import pytest
from memeforge_common.gathering import Gathering

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_it_waits_for_two_or_more_coming_within_the_budget_of_the_oldest() -> None:
    clock = Clock()
    gathering = Gathering(0.05, clock=clock)
    assert gathering.wait_s(1, 10, oldest_at=clock.t, coming=2) == pytest.approx(0.05)
    assert gathering.wait_s(4, 10, oldest_at=clock.t - 0.03, coming=9) == pytest.approx(0.02)
    assert gathering.wait_s(4, 10, oldest_at=clock.t - 0.06, coming=9) == 0.0  # spent


def test_one_coming_is_not_worth_a_wait() -> None:
    clock = Clock()
    assert Gathering(0.05, clock=clock).wait_s(1, 10, oldest_at=clock.t, coming=1) == 0.0


def test_a_full_call_goes_at_once() -> None:
    clock = Clock()
    assert Gathering(0.05, clock=clock).wait_s(10, 10, oldest_at=clock.t, coming=5) == 0.0


def test_no_budget_never_waits() -> None:
    clock = Clock()
    assert Gathering(0.0, clock=clock).wait_s(1, 10, oldest_at=clock.t, coming=5) == 0.0

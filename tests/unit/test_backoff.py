"""The one backoff rule: exponential, capped, jittered within its bounds."""

from __future__ import annotations

import pytest
from memeforge_common.backoff import Backoff
from memeforge_common.worker import visibility_delay

pytestmark = pytest.mark.unit


def test_delays_double_up_to_the_cap_without_jitter() -> None:
    """README "Retries with backoff": doubling, capped at MEMEFORGE_RETRY_MAX_S."""
    backoff = Backoff(base_s=0.5, max_s=3.0, jitter=0.0)
    assert [backoff.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_jitter_stays_within_its_fraction() -> None:
    """README "Retries with backoff": "jittered"."""
    backoff = Backoff(base_s=10.0, max_s=10.0, jitter=0.2)
    delays = [backoff.delay(1) for _ in range(500)]
    assert all(8.0 <= d <= 12.0 for d in delays)
    assert len(set(delays)) > 1


def test_visibility_delays_are_whole_seconds_within_the_sqs_limit() -> None:
    assert visibility_delay(Backoff(base_s=2.0, max_s=1e9, jitter=0.0), 40) == 43200
    assert visibility_delay(Backoff(base_s=2.0, max_s=60.0, jitter=0.0), 3) == 8

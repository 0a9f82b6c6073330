from __future__ import annotations

import pytest
from memeforge_common.tracing import (
    child_of,
    from_attributes,
    new_traceparent,
    trace_attributes,
    trace_id,
    valid_traceparent,
)

pytestmark = pytest.mark.unit

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_a_child_keeps_the_trace_and_takes_a_new_span() -> None:
    child = child_of(PARENT)
    assert trace_id(child) == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert child != PARENT
    assert child.endswith("-01")


@pytest.mark.parametrize(
    "bad",
    [
        None,
        "",
        "garbage",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",  # uppercase: invalid
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # forbidden version
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\n00-x",
        "00-" + "a" * 5000,
    ],
)
def test_invalid_parents_start_a_new_trace(bad: str | None) -> None:
    assert valid_traceparent(bad) is None
    fresh = child_of(bad)
    assert valid_traceparent(fresh) == fresh
    assert trace_id(fresh) is not None


def test_trace_context_round_trips_through_message_attributes() -> None:
    parent = new_traceparent()
    attributes = trace_attributes(parent)
    received = {k: v["StringValue"] for k, v in attributes.items()}
    assert from_attributes(received) == parent
    assert from_attributes({}) is None

from __future__ import annotations

import itertools

import pytest
from memeforge_common.items import TRANSITIONS, can_transition, sources_of
from memeforge_common.models import MemeState

pytestmark = pytest.mark.unit

ORDER = [MemeState.PENDING, MemeState.QUEUED, MemeState.RENDERING, MemeState.DONE]


def test_happy_path_is_allowed() -> None:
    for current, target in itertools.pairwise(ORDER):
        assert can_transition(current, target)


@pytest.mark.parametrize("terminal", [MemeState.DONE, MemeState.FAILED])
def test_terminal_states_never_move(terminal: MemeState) -> None:
    """docs/architecture.md "State machine": DONE, FAILED are terminal."""
    assert all(not can_transition(terminal, target) for target in MemeState)


def test_state_never_moves_backwards() -> None:
    """docs/architecture.md "State machine": state never moves backwards."""
    rank = {state: i for i, state in enumerate(ORDER)} | {MemeState.FAILED: len(ORDER)}
    for current, targets in TRANSITIONS.items():
        for target in targets:
            assert rank[target] >= rank[current], (current, target)


def test_every_live_state_can_fail() -> None:
    """docs/architecture.md "State machine": every live state can end FAILED."""
    assert sources_of(MemeState.FAILED) == {
        MemeState.PENDING,
        MemeState.QUEUED,
        MemeState.RENDERING,
    }


def test_rendering_may_restart_after_a_crash() -> None:
    """docs/architecture.md "State machine": RENDERING -> RENDERING on redelivery; QUEUED
    is optional (the consumer does not write it), so a render may be marked from PENDING."""
    assert sources_of(MemeState.RENDERING) == {
        MemeState.PENDING,
        MemeState.QUEUED,
        MemeState.RENDERING,
    }


def test_a_fast_render_may_end_without_queued_or_rendering() -> None:
    """docs/architecture.md "State machine": QUEUED and RENDERING are optional
    (PENDING → DONE); QUEUED stays a source for the items of an older consumer."""
    assert sources_of(MemeState.DONE) == {
        MemeState.PENDING,
        MemeState.QUEUED,
        MemeState.RENDERING,
    }
    assert not can_transition(MemeState.DONE, MemeState.RENDERING)
    assert not can_transition(MemeState.RENDERING, MemeState.QUEUED)
    assert not can_transition(MemeState.RENDERING, MemeState.PENDING)

"""Conditional state transitions against a real DynamoDB emulator over HTTP."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from memeforge_common.aws import AwsClients
from memeforge_common.items import ItemExists, MemeStore, new_item
from memeforge_common.models import Failure, MemeResult, MemeState, RenderSpec, classic_boxes
from memeforge_common.settings import Settings
from prometheus_client import REGISTRY

pytestmark = pytest.mark.integration


@pytest.fixture
def store(aws: AwsClients, resources: Settings) -> MemeStore:
    return MemeStore(aws.dynamodb, resources.table)


async def _pending(store: MemeStore) -> str:
    item = new_item(uuid.uuid4().hex, "tpl", RenderSpec(boxes=classic_boxes("a", "b")))
    await store.create(item)
    return item.id


async def test_exactly_one_of_many_racing_writers_wins(store: MemeStore) -> None:
    """README "DynamoDB requests serialized": racing conditional writes, one wins."""
    for _ in range(5):  # several rounds: a non-atomic condition check loses some of them
        meme_id = await _pending(store)
        racers = (store.transition(meme_id, MemeState.QUEUED) for _ in range(12))
        results = await asyncio.gather(*racers)
        assert results.count(True) == 1
        item = await store.get(meme_id)
        assert item is not None
        assert item.state is MemeState.QUEUED
        assert set(item.state_times) == {MemeState.PENDING, MemeState.QUEUED}


async def test_won_and_lost_transitions_are_counted(store: MemeStore) -> None:
    """README: worker metrics count "won/lost state transitions"."""

    def count(result: str) -> float:
        labels = {"target": "QUEUED", "result": result}
        return REGISTRY.get_sample_value("memeforge_transitions_total", labels) or 0.0

    won, lost = count("won"), count("lost")
    meme_id = await _pending(store)
    assert await store.transition(meme_id, MemeState.QUEUED)
    assert not await store.transition(meme_id, MemeState.QUEUED)  # a duplicate's write
    assert (count("won") - won, count("lost") - lost) == (1, 1)


async def test_state_cannot_skip_or_go_back(store: MemeStore) -> None:
    """docs/architecture.md invariant 3: "State moves forward only"."""
    meme_id = await _pending(store)
    assert await store.transition(meme_id, MemeState.RENDERING, attempts=1)
    assert not await store.transition(meme_id, MemeState.QUEUED)  # RENDERING → QUEUED: back
    result = MemeResult(key="memes/x.jpg", content_type="image/jpeg", bytes=1, width=1, height=1)
    assert await store.transition(meme_id, MemeState.DONE, result=result)
    # DONE is final: neither a late failure nor a duplicate render may change it.
    assert not await store.transition(meme_id, MemeState.FAILED, failure=Failure(reason="late"))
    assert not await store.transition(meme_id, MemeState.RENDERING)
    item = await store.get(meme_id)
    assert item is not None
    assert (item.state, item.result, item.failure, item.attempts) == (
        MemeState.DONE,
        result,
        None,
        1,
    )


async def test_a_meme_may_end_straight_from_pending(store: MemeStore) -> None:
    """docs/architecture.md "State machine": QUEUED and RENDERING are optional, so a fast
    render ends its meme PENDING → DONE in one conditional write, once."""
    meme_id = await _pending(store)
    result = MemeResult(key="memes/y.jpg", content_type="image/jpeg", bytes=1, width=1, height=1)
    assert await store.transition(meme_id, MemeState.DONE, result=result, attempts=1)
    assert not await store.transition(meme_id, MemeState.DONE, result=result, attempts=2)
    item = await store.get(meme_id)
    assert item is not None
    assert (item.state, item.attempts) == (MemeState.DONE, 1)
    assert set(item.state_times) == {MemeState.PENDING, MemeState.DONE}


async def test_transition_on_a_missing_item_is_a_lost_race(store: MemeStore) -> None:
    """docs/architecture.md invariant 3: a lost race is False, never raised."""
    assert not await store.transition(uuid.uuid4().hex, MemeState.QUEUED)
    assert await store.get(uuid.uuid4().hex) is None


async def test_create_refuses_to_overwrite(store: MemeStore) -> None:
    meme_id = await _pending(store)
    item = await store.get(meme_id)
    assert item is not None
    with pytest.raises(ItemExists):
        await store.create(item)

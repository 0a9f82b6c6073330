"""The per-tenant in-flight cap in MemeStore, against a real DynamoDB emulator over HTTP:
a slot is taken by the write that creates a counted meme and freed exactly once by the
write that ends it (or deletes it while live)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from memeforge_common.aws import AwsClients
from memeforge_common.items import InFlightCapReached, ItemExists, ItemMoved, MemeStore, new_item
from memeforge_common.models import Failure, MemeItem, MemeState, RenderSpec, classic_boxes
from memeforge_common.settings import Settings

pytestmark = pytest.mark.integration

CAP = 3
FAILURE = Failure(reason="stuck", detail="test")


@pytest.fixture
def store(aws: AwsClients, resources: Settings) -> MemeStore:
    return MemeStore(aws.dynamodb, resources.table)


def counted(tenant: str) -> MemeItem:
    spec = RenderSpec(boxes=classic_boxes("a", "b"))
    return new_item(uuid.uuid4().hex, "tpl", spec, tenant=tenant, counted=True)


async def test_racing_submits_take_exactly_the_cap_and_the_refused_write_nothing(
    store: MemeStore,
) -> None:
    items = [counted("acme") for _ in range(4 * CAP)]
    results = await asyncio.gather(
        *(store.create_counted(item, CAP) for item in items), return_exceptions=True
    )
    admitted = [item for item, r in zip(items, results, strict=True) if r is None]
    assert len(admitted) == CAP, results
    assert all(isinstance(r, InFlightCapReached) for r in results if r is not None)
    assert await store.in_flight("acme") == CAP
    stored = await asyncio.gather(*(store.get(item.id) for item in items))
    assert {s.id for s in stored if s is not None} == {item.id for item in admitted}
    assert await store.in_flight("other") == 0  # a cap per tenant


async def test_ending_a_meme_frees_its_slot_exactly_once(store: MemeStore) -> None:
    items = [counted("acme") for _ in range(CAP)]
    for item in items:
        await store.create_counted(item, CAP)
    with pytest.raises(ItemExists):  # an SDK retry of a write that landed takes no slot
        await store.create_counted(items[0], CAP)
    first = items[0].id
    ends = (
        store.transition(first, MemeState.FAILED, failure=FAILURE, slot="acme") for _ in range(6)
    )
    assert (await asyncio.gather(*ends)).count(True) == 1
    assert await store.in_flight("acme") == CAP - 1
    ended = await store.get(first)
    assert ended is not None
    assert ended.state is MemeState.FAILED
    assert not ended.counted
    # A slot named for another tenant, or none at all, cannot end a counted meme.
    second = items[1].id
    assert not await store.transition(second, MemeState.FAILED, failure=FAILURE, slot="evil")
    assert not await store.transition(second, MemeState.FAILED, failure=FAILURE)
    assert await store.in_flight("evil") == 0
    # Non-terminal steps keep the slot; DONE frees it.
    assert await store.transition(second, MemeState.QUEUED, slot="acme")
    assert await store.transition(second, MemeState.RENDERING, slot="acme")
    assert await store.in_flight("acme") == CAP - 1
    assert await store.transition(second, MemeState.DONE, slot="acme")
    assert await store.in_flight("acme") == CAP - 2
    await store.create_counted(counted("acme"), CAP)  # a freed slot is usable again


async def test_deleting_a_live_meme_frees_its_slot_and_an_ended_one_does_not(
    store: MemeStore,
) -> None:
    live, ended = counted("acme"), counted("acme")
    for item in (live, ended):
        await store.create_counted(item, CAP)
    assert await store.transition(ended.id, MemeState.FAILED, failure=FAILURE, slot="acme")
    assert await store.in_flight("acme") == 1
    stale = await store.get(live.id)
    assert stale is not None
    assert await store.transition(live.id, MemeState.QUEUED)
    with pytest.raises(ItemMoved):  # read PENDING, now QUEUED: read it again
        await store.delete(stale)
    assert await store.in_flight("acme") == 1
    fresh = await store.get(live.id)
    assert fresh is not None
    await store.delete(fresh)
    assert await store.get(live.id) is None
    assert await store.in_flight("acme") == 0
    read = await store.get(ended.id)
    assert read is not None
    await store.delete(read)
    assert await store.in_flight("acme") == 0


async def test_uncounted_items_are_written_and_ended_without_the_counter(
    store: MemeStore,
) -> None:
    item = new_item(uuid.uuid4().hex, "tpl", RenderSpec(boxes=classic_boxes("a", "")), tenant="t")
    with pytest.raises(ValueError, match="create_counted writes a counted item"):
        await store.create_counted(item, CAP)
    await store.create(item)
    assert not await store.transition(item.id, MemeState.FAILED, failure=FAILURE, slot="t")
    assert await store.transition(item.id, MemeState.FAILED, failure=FAILURE)
    assert await store.in_flight("t") == 0
    with pytest.raises(ValueError, match="written by create_counted"):
        await store.create(counted("t"))

"""Waiting on memes: through the public API, or in the table."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from memeforge_common.aws import AwsClients
from memeforge_common.items import MemeItem, MemeStore, new_item
from memeforge_common.models import MemeResult, MemeState, RenderSpec, classic_boxes, output_key
from memeforge_common.settings import Settings

DEADLINE_S = 120


async def wait_until_settled(api: httpx.AsyncClient, meme_id: str) -> dict[str, Any]:
    """Long-poll until the meme is DONE or FAILED (bounded by DEADLINE_S)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_S
    while loop.time() < deadline:
        meme: dict[str, Any] = (await api.get(f"/memes/{meme_id}", params={"wait": 10})).json()
        if meme["state"] in ("DONE", "FAILED"):
            return meme
    raise AssertionError(f"meme {meme_id} did not settle within {DEADLINE_S}s")


async def wait_until_terminal(store: MemeStore, meme_id: str) -> MemeItem:
    """Poll the table until the item is DONE or FAILED (bounded by DEADLINE_S)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_S
    while loop.time() < deadline:
        item = await store.get(meme_id)
        if item is not None and item.state.terminal:
            return item
        await asyncio.sleep(0.2)
    raise AssertionError(f"meme {meme_id} did not settle within {DEADLINE_S}s")


async def put_done_meme(aws: AwsClients, settings: Settings, body: bytes, *, tenant: str) -> str:
    """A DONE meme of ``tenant`` (no thumbnail) whose output object holds ``body``, written
    the way the renderer leaves it: the object first, then PENDING → RENDERING → DONE."""
    meme_id = uuid.uuid4().hex
    key = output_key(meme_id, tenant=tenant)
    await aws.s3.put_object(Bucket=settings.bucket, Key=key, Body=body, ContentType="image/jpeg")
    store = MemeStore(aws.dynamodb, settings.table)
    spec = RenderSpec(boxes=classic_boxes("a", ""))
    await store.create(new_item(meme_id, "any", spec, tenant=tenant))
    assert await store.transition(meme_id, MemeState.RENDERING)
    result = MemeResult(key=key, content_type="image/jpeg", bytes=len(body), width=1, height=1)
    assert await store.transition(meme_id, MemeState.DONE, result=result)
    return meme_id

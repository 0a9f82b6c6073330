"""Waiting on memes: through the public API, or in the table."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from memeforge_common.items import MemeItem, MemeStore

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

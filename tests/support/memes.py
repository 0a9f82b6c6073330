"""Waiting on memes through the public API."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

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

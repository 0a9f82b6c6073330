"""Revocation across api processes: each caches key records for MEMEFORGE_KEY_CACHE_S, so
once that long has passed since a revocation, every process refuses the key."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import httpx
import pytest

from devenv.run.stack import Stack, create_key
from tests.support.stack import start_api

pytestmark = pytest.mark.e2e

CACHE_S = 2.0


async def test_a_revoked_key_is_refused_by_every_api_process_within_the_cache_time(
    stack: Stack,
) -> None:
    settings = {"MEMEFORGE_KEY_CACHE_S": str(CACHE_S)}
    urls = [await asyncio.to_thread(start_api, stack, f"api-{i}", settings) for i in (1, 2)]
    try:
        token = await asyncio.to_thread(create_key, stack.env)
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(headers=headers, timeout=30) as client:
            for url in urls:  # both processes now hold the key in their cache
                assert (await client.get(f"{url}/templates")).status_code == 200
            revoked = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-m", "memeforge_common.keys", "revoke", token.split("_")[1]],
                env=stack.env,
                timeout=60,
                check=False,
            )
            assert revoked.returncode == 0
            # Every cache entry was read before the revocation: CACHE_S later all are stale.
            await asyncio.sleep(CACHE_S)
            for url in urls:
                refused = await client.get(f"{url}/templates")
                assert refused.status_code == 401, url
                assert refused.json()["code"] == "unauthorized"
    finally:
        for name in ("api-1", "api-2"):
            if name in stack.services:
                await asyncio.to_thread(stack.stop_service, name)

"""A batch of 200 through every real process: fan-out, renders, counters, the ZIP."""

from __future__ import annotations

import asyncio
import io
import re
import uuid
import zipfile
from typing import Any

import httpx
import pytest
from PIL import Image

from devenv.run.stack import Stack
from tests.support.images import gradient
from tests.support.mail import mail_to

pytestmark = pytest.mark.e2e

ITEMS = 200
FORMATS = ("jpeg", "png", "webp")
PIL_FORMATS = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}
DEADLINE_S = 600


async def _wait_until_archived(api: httpx.AsyncClient, batch_id: str) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_S
    while loop.time() < deadline:
        batch: dict[str, Any] = (await api.get(f"/batches/{batch_id}")).json()
        if batch["state"] == "DONE":
            return batch
        await asyncio.sleep(1)
    raise AssertionError(f"batch {batch_id} not archived within {DEADLINE_S}s: {batch}")


async def _all_items(api: httpx.AsyncClient, batch_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params = {"limit": "100"} | ({"cursor": cursor} if cursor else {})
        page = (await api.get(f"/batches/{batch_id}/items", params=params)).json()
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


async def _mail_delivered(api: httpx.AsyncClient, batch_id: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_S
    while loop.time() < deadline:
        shown = (await api.get(f"/batches/{batch_id}")).json()["deliveries"].get("email", [])
        if any(a["outcome"] == "delivered" for a in shown):
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"batch {batch_id}'s mail not delivered within {DEADLINE_S}s")


async def test_a_batch_of_200_ends_with_exact_counts_and_a_zip_of_200_images(
    api: httpx.AsyncClient,
) -> None:
    """README "Counts by state" and "the ZIP once every item ended"."""
    await run_batch(api, ITEMS)


async def test_a_batch_with_notify_email_mails_its_archive_one_without_mails_nothing(
    stack: Stack, api: httpx.AsyncClient
) -> None:
    """README "one mail to notify_email, both once the ZIP exists"."""
    silent, _ = await run_batch(api, 2)
    recipient = f"{uuid.uuid4().hex[:12]}@example.com"
    batch_id, archive = await run_batch(api, 4, notify_email=recipient)
    await archive_mailed(stack, api, batch_id, recipient, archive)
    assert (await api.get(f"/batches/{silent}")).json()["deliveries"] == {}
    endpoint = stack.emulator.env["AWS_ENDPOINT_URL"]
    everything = await asyncio.to_thread(mail_to, endpoint, stack.emulator.backend, "@")
    assert not any(silent in str(m.message) for m in everything)


async def archive_mailed(
    stack: Stack, api: httpx.AsyncClient, batch_id: str, recipient: str, archive: bytes
) -> None:
    """The batch's one mail reached ``recipient`` with its counts and a presigned link
    that downloads its ZIP (``archive``)."""
    await _mail_delivered(api, batch_id)
    total = (await api.get(f"/batches/{batch_id}")).json()["total"]
    endpoint = stack.emulator.env["AWS_ENDPOINT_URL"]
    [mail] = await asyncio.to_thread(mail_to, endpoint, stack.emulator.backend, recipient)
    assert mail.message["To"] == recipient
    assert mail.message["Subject"] == f"Your batch is ready: {total} done, 0 failed"
    text = mail.message.get_body(("plain",))
    assert text is not None
    assert f"{total} of {total} done, 0 failed" in text.get_content()
    [link] = re.findall(r"https?://\S+", text.get_content())
    async with httpx.AsyncClient(timeout=60) as storage:
        downloaded = await storage.get(link)
    assert downloaded.status_code == 200, downloaded.text
    assert downloaded.content == archive


async def run_batch(api: httpx.AsyncClient, count: int, **notify: str) -> tuple[str, bytes]:
    """A batch of ``count`` through the stack: all end, the counts add up, the ZIP holds
    ``count`` images that decode. Its id and its ZIP."""
    upload = await api.post(
        "/templates",
        data={"name": "Batch gradient", "id": "batch-gradient"},
        files={"file": ("g.png", gradient(96, 72, "PNG"), "image/png")},
    )
    assert upload.status_code in (201, 409), upload.text
    items = [
        {"template_id": "batch-gradient", "top": f"item {i}", "format": FORMATS[i % 3]}
        for i in range(count)
    ]
    created = await api.post("/batches", json={"items": items, **notify})
    assert created.status_code == 202, created.text
    batch_id = created.json()["id"]
    assert created.json()["total"] == count

    batch = await _wait_until_archived(api, batch_id)
    assert batch["counts"] == {"done": count, "failed": 0, "pending": 0}

    listed = await _all_items(api, batch_id)
    assert len({m["id"] for m in listed}) == count
    assert {m["state"] for m in listed} == {"DONE"}

    redirect = await api.get(f"/batches/{batch_id}/archive", follow_redirects=False)
    assert redirect.status_code == 307
    async with httpx.AsyncClient(timeout=60) as storage:
        archive = (await storage.get(redirect.headers["location"])).content
    assert len(archive) == batch["archive_bytes"]
    with zipfile.ZipFile(io.BytesIO(archive)) as zipped:
        images = sorted(n for n in zipped.namelist() if n != "manifest.json")
        assert len(images) == count
        for seq, name in enumerate(images):
            assert name.startswith(f"{seq:03d}-")
            with Image.open(io.BytesIO(zipped.read(name))) as image:
                image.load()
                assert image.format == PIL_FORMATS[FORMATS[seq % 3]]
                assert image.size == (96, 72)
    return batch_id, archive

"""Batches: the api in-process and the consumer's batch sweeper, against the real emulator.

No renderer runs here: items are driven to their end the way the workers end them
(``MemeStore.transition`` with the batch id), so counters and races can be forced.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import os
import re
import uuid
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest
from memeforge_api.app import create_app
from memeforge_common.apikeys import ALL_SCOPES, KeyStore
from memeforge_common.aws import AwsClients
from memeforge_common.batches import BatchStore
from memeforge_common.endpoints import EndpointStore
from memeforge_common.fanout import batch_meme_id
from memeforge_common.items import MemeStore, new_item
from memeforge_common.limits import MAX_BATCH_ITEMS
from memeforge_common.models import (
    Batch,
    BatchEntry,
    BatchRequest,
    BatchState,
    Failure,
    MemeResult,
    MemeState,
    NotificationMessage,
    RenderSpec,
    classic_boxes,
    output_key,
    utcnow,
)
from memeforge_common.outputs import OutputStore
from memeforge_common.publishers import NotificationPublisher, RequestPublisher
from memeforge_common.queues import QueueMessage, queue_url
from memeforge_common.settings import Settings
from memeforge_consumer.batch_sweeper import BatchSweeper
from prometheus_client import REGISTRY

from tests.conftest import BACKEND
from tests.support.images import gradient
from tests.support.mail import mail_to
from tests.support.notifications import notifier
from tests.support.settings import unique_settings

pytestmark = pytest.mark.integration


@dataclass
class Rig:
    a: httpx.AsyncClient
    b: httpx.AsyncClient
    memes: MemeStore
    batches: BatchStore
    sweeper: BatchSweeper
    aws: AwsClients
    settings: Settings


def _settings(resources: Settings, **overrides: object) -> Settings:
    """The bootstrapped resources' names, with ``overrides``."""
    return unique_settings(
        bucket=resources.bucket,
        table=resources.table,
        request_queue=resources.request_queue,
        render_queue=resources.render_queue,
        notification_queue=resources.notification_queue,
        **overrides,
    )


@pytest.fixture
async def rig(resources: Settings, aws: AwsClients) -> AsyncIterator[Rig]:
    settings = _settings(resources, pending_timeout_s=1.0)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        keys = KeyStore(aws.dynamodb, settings.table)
        key_a = await keys.create("tenant-a", "a", ALL_SCOPES)
        key_b = await keys.create("tenant-b", "b", ALL_SCOPES)
        transport = httpx.ASGITransport(app=app)
        requests = RequestPublisher(aws.sqs, await queue_url(aws.sqs, settings.request_queue))
        notifications = NotificationPublisher(
            aws.sqs, await queue_url(aws.sqs, settings.notification_queue)
        )
        memes = MemeStore(aws.dynamodb, settings.table)
        batches = BatchStore(aws.dynamodb, settings.table)
        outputs = OutputStore(aws.s3, settings.bucket)
        async with (
            httpx.AsyncClient(
                transport=transport,
                base_url="http://api",
                headers={"Authorization": f"Bearer {key_a.token}"},
            ) as a,
            httpx.AsyncClient(
                transport=transport,
                base_url="http://api",
                headers={"Authorization": f"Bearer {key_b.token}"},
            ) as b,
        ):
            sweeper = BatchSweeper(batches, memes, outputs, requests, notifications, settings)
            yield Rig(a, b, memes, batches, sweeper, aws, settings)


def _items(n: int) -> list[dict[str, object]]:
    return [{"template_id": "any", "top": f"item {i}", "format": "png"} for i in range(n)]


async def _submit(
    client: httpx.AsyncClient,
    n: int,
    *,
    callback_url: str | None = None,
    notify_email: str | None = None,
    **headers: str,
) -> dict[str, object]:
    notify = {"callback_url": callback_url, "notify_email": notify_email}
    body = {"items": _items(n)} | {k: v for k, v in notify.items() if v}
    response = await client.post("/batches", json=body, headers=headers)
    assert response.status_code == 202, response.text
    body: dict[str, object] = response.json()
    assert response.headers["location"] == f"/batches/{body['id']}"
    return body


async def _finish(rig: Rig, batch_id: str, seq: int, tenant: str = "tenant-a") -> bytes:
    """Drive item ``seq`` to DONE as the renderer would: its output, then DONE."""
    meme_id = batch_meme_id(batch_id, seq)
    image = gradient(40 + seq, 30, "PNG")
    key = output_key(meme_id, "png", tenant=tenant)
    await rig.aws.s3.put_object(Bucket=rig.settings.bucket, Key=key, Body=image)
    for state in (MemeState.QUEUED, MemeState.RENDERING):
        assert await rig.memes.transition(meme_id, state)
    result = MemeResult(key=key, content_type="image/png", bytes=len(image), width=1, height=1)
    assert await rig.memes.transition(
        meme_id, MemeState.DONE, result=result, batch_id=batch_id, slot=tenant
    )
    return image


async def test_counters_count_each_end_once_and_the_archive_holds_the_outputs(rig: Rig) -> None:
    """README "Counts by state (one read of the batch's counters, whatever its size)" and
    docs/architecture.md "A retried end loses the meme's condition"."""
    await EndpointStore(rig.aws.dynamodb, rig.settings.table).upsert("tenant-a", None)
    batch = await _submit(rig.a, 4, callback_url="https://hooks.example/batches")
    batch_id = str(batch["id"])
    assert batch["state"] == "RUNNING"
    assert await rig.memes.in_flight("tenant-a") == 4  # a slot per item, taken at once
    assert batch["counts"] == {"done": 0, "failed": 0, "pending": 4}

    images = [await _finish(rig, batch_id, seq) for seq in range(3)]
    # A retried end (a redelivered job) loses the conditional transition: no second count.
    meme_0 = batch_meme_id(batch_id, 0)
    result = MemeResult(key="x", content_type="image/png", bytes=1, width=1, height=1)
    assert not await rig.memes.transition(
        meme_0, MemeState.DONE, result=result, batch_id=batch_id, slot="tenant-a"
    )
    failing = batch_meme_id(batch_id, 3)
    stuck = Failure(reason="stuck")
    assert await rig.memes.transition(
        failing, MemeState.FAILED, failure=stuck, batch_id=batch_id, slot="tenant-a"
    )
    assert not await rig.memes.transition(
        failing, MemeState.FAILED, failure=stuck, batch_id=batch_id, slot="tenant-a"
    )
    assert await rig.memes.in_flight("tenant-a") == 0  # every item's slot freed once

    view = (await rig.a.get(f"/batches/{batch_id}")).json()
    assert view["counts"] == {"done": 3, "failed": 1, "pending": 0}
    assert view["state"] == "ARCHIVING"
    not_ready = await rig.a.get(f"/batches/{batch_id}/archive", follow_redirects=False)
    assert not_ready.status_code == 409
    assert not_ready.json()["code"] == "batch-not-ready"

    assert await rig.sweeper.sweep_once() == 1
    assert await rig.sweeper.sweep_once() == 0  # built once
    url = await queue_url(rig.aws.sqs, rig.settings.notification_queue)
    received = await rig.aws.sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)
    [message] = received["Messages"]
    note = NotificationMessage.model_validate_json(message["Body"])
    assert (note.event, note.subject_id, note.tenant) == ("batch.done", batch_id, "tenant-a")
    assert note.event_id == f"msg_{batch_id}_batch_done"
    assert note.target == "https://hooks.example/batches"
    assert note.data is not None
    assert note.data["counts"] == {"done": 3, "failed": 1}
    assert note.data["links"]["archive"] == f"/batches/{batch_id}/archive"
    view = (await rig.a.get(f"/batches/{batch_id}")).json()
    assert view["state"] == "DONE"
    assert view["links"]["archive"] == f"/batches/{batch_id}/archive"
    redirect = await rig.a.get(f"/batches/{batch_id}/archive", follow_redirects=False)
    assert redirect.status_code == 307
    async with httpx.AsyncClient() as storage:
        archive = (await storage.get(redirect.headers["location"])).content
    assert len(archive) == view["archive_bytes"]
    with zipfile.ZipFile(io.BytesIO(archive)) as zipped:
        names = sorted(n for n in zipped.namelist() if n != "manifest.json")
        assert names == [f"{seq:03d}-{batch_meme_id(batch_id, seq)}.png" for seq in range(3)]
        assert [zipped.read(n) for n in names] == images
        assert zipped.testzip() is None
        manifest = zipped.read("manifest.json").decode()
    assert '"failure": "stuck"' in manifest


def _dynamodb_writes() -> dict[str, float]:
    """memeforge_aws_requests_total of each DynamoDB write operation, so far."""
    operations = ("UpdateItem", "PutItem", "TransactWriteItems")
    return {
        op: REGISTRY.get_sample_value(
            "memeforge_aws_requests_total", {"service": "dynamodb", "operation": op}
        )
        or 0.0
        for op in operations
    }


async def test_a_batch_memes_end_is_one_write_that_also_moves_the_change_feed(rig: Rig) -> None:
    """docs/architecture.md: the end of a batch's meme is one TransactWriteItems with its
    state, its in-flight slot, its notify_due mark and its batch count; and, as every
    write that moves ``updated_at``, it sets ``feed`` (docs/waiting.md "The change feed")."""
    batch_id = str((await _submit(rig.a, 2))["id"])
    meme_id = batch_meme_id(batch_id, 0)
    for state in (MemeState.QUEUED, MemeState.RENDERING):
        assert await rig.memes.transition(meme_id, state)
    # Stamped a minute on, so the write is only in the feed if it moved ``feed`` too.
    ended_at = utcnow() + timedelta(minutes=1)
    before = _dynamodb_writes()
    assert await rig.memes.transition(
        meme_id,
        MemeState.FAILED,
        failure=Failure(reason="bad"),
        notify_due="meme.failed",
        at=ended_at,
        batch_id=batch_id,
        slot="tenant-a",
    )
    after = _dynamodb_writes()
    assert {op: after[op] - before[op] for op in before} == {
        "UpdateItem": 0,
        "PutItem": 0,
        "TransactWriteItems": 1,
    }
    assert await rig.memes.in_flight("tenant-a") == 1  # the other item still holds one
    view = (await rig.a.get(f"/batches/{batch_id}")).json()
    assert view["counts"] == {"done": 0, "failed": 1, "pending": 1}
    due = await rig.memes.notify_due("meme.failed", ended_at + timedelta(seconds=1))
    assert meme_id in due
    changed, calls = await rig.memes.changes(ended_at, ended_at, {meme_id})
    assert calls == 1  # the one minute bucket of ``ended_at``
    assert changed[meme_id].state is MemeState.FAILED


async def test_items_are_paginated_in_order_exactly_once(rig: Rig) -> None:
    """README "Its memes in the order given (cursor pagination)"."""
    batch_id = str((await _submit(rig.a, 23))["id"])
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params = {"limit": "5"} | ({"cursor": cursor} if cursor else {})
        response = await rig.a.get(f"/batches/{batch_id}/items", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["items"]) <= 5
        seen += [m["id"] for m in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [batch_meme_id(batch_id, seq) for seq in range(23)]
    assert pages >= 5
    bad = await rig.a.get(f"/batches/{batch_id}/items", params={"cursor": "bm90IGEgY3Vyc29y"})
    assert bad.status_code == 400
    assert bad.json()["code"] == "invalid-cursor"


async def test_a_batch_meme_is_deleted_only_once_it_has_ended(rig: Rig) -> None:
    """docs/architecture.md "a batch's meme can be deleted once it has ended"."""
    batch_id = str((await _submit(rig.a, 2))["id"])
    live = batch_meme_id(batch_id, 0)
    refused = await rig.a.delete(f"/memes/{live}")
    assert refused.status_code == 409
    assert refused.json()["code"] == "meme-in-running-batch"
    assert await rig.memes.get(live) is not None
    await _finish(rig, batch_id, 0)
    assert (await rig.a.delete(f"/memes/{live}")).status_code == 204
    assert (await rig.a.get(f"/batches/{batch_id}")).json()["counts"]["done"] == 1


async def test_idempotency_key_replays_the_batch_and_refuses_another_body(rig: Rig) -> None:
    """README "Idempotency-Key works as for /memes"."""
    first = await _submit(rig.a, 3, **{"Idempotency-Key": "batch-key"})
    again = await rig.a.post(
        "/batches", json={"items": _items(3)}, headers={"Idempotency-Key": "batch-key"}
    )
    assert again.status_code == 202
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first["id"]
    other = await rig.a.post(
        "/batches", json={"items": _items(4)}, headers={"Idempotency-Key": "batch-key"}
    )
    assert other.status_code == 409
    assert other.json()["code"] == "idempotency-key-reused"
    page = (await rig.a.get(f"/batches/{first['id']}/items")).json()
    assert len(page["items"]) == 3  # the replay wrote no second set of memes


async def test_more_than_the_cap_is_refused_whole(rig: Rig) -> None:
    """README "up to 500 memes in one request" and "the batch, not each item, is announced"."""
    too_many = await rig.a.post("/batches", json={"items": _items(MAX_BATCH_ITEMS + 1)})
    assert too_many.status_code == 422
    assert too_many.json()["code"] == "validation-failed"
    not_json = await rig.a.post(
        "/batches", content=b"\xff-", headers={"content-type": "application/json"}
    )
    assert not_json.status_code == 400  # as documented (the fuzzer found it undocumented)
    assert not_json.json()["code"] == "bad-request"
    empty = await rig.a.post("/batches", json={"items": []})
    assert empty.status_code == 422
    bad_item = await rig.a.post("/batches", json={"items": [*_items(2), {"template_id": "x"}]})
    assert bad_item.status_code == 422
    item_hook = {"template_id": "any", "top": "a", "callback_url": "https://hooks.example/"}
    announced_per_item = await rig.a.post("/batches", json={"items": [item_hook]})
    assert announced_per_item.status_code == 422
    no_secret = await rig.b.post(
        "/batches", json={"items": _items(1), "callback_url": "https://hooks.example/"}
    )
    assert no_secret.status_code == 422
    assert no_secret.json()["code"] == "webhook-not-configured"


async def test_another_tenants_batch_is_not_found(rig: Rig) -> None:
    """docs/architecture.md "another tenant's batch is `404 batch-not-found` on all of them"."""
    batch_id = (await _submit(rig.a, 2))["id"]
    for path in ("", "/items", "/archive"):
        response = await rig.b.get(f"/batches/{batch_id}{path}", follow_redirects=False)
        assert response.status_code == 404, path
        assert response.json()["code"] == "batch-not-found"
    missing = await rig.a.get(f"/batches/{'0' * 32}")
    assert missing.status_code == 404


async def test_an_interrupted_fan_out_is_finished_by_the_sweeper(rig: Rig) -> None:
    """docs/architecture.md "the batch stays `SUBMITTING`; the consumer's batch sweeper finds
    it": the api died after storing the request and the batch record."""
    batch_id = "ab" * 16
    request = BatchRequest(
        items=tuple(
            BatchEntry(template_id="any", spec=RenderSpec(boxes=classic_boxes(f"t{i}", "")))
            for i in range(5)
        )
    )
    long_ago = utcnow() - timedelta(minutes=5)
    await OutputStore(rig.aws.s3, rig.settings.bucket).save_batch_request(
        batch_id, "tenant-a", request
    )
    assert await rig.batches.create(
        Batch(
            id=batch_id,
            tenant="tenant-a",
            state=BatchState.SUBMITTING,
            total=5,
            created_at=long_ago,
            updated_at=long_ago,
        )
    )
    # One item was written (and moved on) before the api died: it is kept as it is.
    moved = batch_meme_id(batch_id, 2)
    await rig.memes.create(
        new_item(moved, "any", request.items[2].spec, tenant="tenant-a", batch=(batch_id, 2))
    )
    assert await rig.memes.transition(moved, MemeState.QUEUED)
    # The frequent pass only archives; the fan-out is resumed by the recovery pass.
    assert await rig.sweeper.archive_ended() == 0
    stalled = await rig.batches.get(batch_id)
    assert stalled is not None
    assert stalled.state is BatchState.SUBMITTING
    assert await rig.sweeper.recover_stalled() == 1
    batch = await rig.batches.get(batch_id)
    assert batch is not None
    assert batch.state is BatchState.RUNNING
    for seq in range(5):
        item = await rig.memes.get(batch_meme_id(batch_id, seq))
        assert item is not None
        assert item.state is (MemeState.QUEUED if seq == 2 else MemeState.PENDING)
        assert item.spec == request.items[seq].spec
        assert item.batch_id == batch_id
        assert item.batch_seq == seq
        assert item.tenant == "tenant-a"


async def test_a_batch_takes_its_items_in_flight_slots_all_at_once_or_not_at_all(
    resources: Settings, aws: AwsClients
) -> None:
    """docs/architecture.md "a slot for each of its items, all or none"."""
    settings = _settings(resources, max_in_flight_per_tenant=5)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        key = await KeyStore(aws.dynamodb, settings.table).create("capped", "c", ALL_SCOPES)
        memes = MemeStore(aws.dynamodb, settings.table)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://api",
            headers={"Authorization": f"Bearer {key.token}"},
        ) as client:
            too_big = await client.post("/batches", json={"items": _items(6)})
            assert too_big.status_code == 429
            assert too_big.json()["code"] == "too-many-in-flight"
            assert await memes.in_flight("capped") == 0
            first = str((await _submit(client, 3))["id"])
            assert await memes.in_flight("capped") == 3
            over = await client.post("/batches", json={"items": _items(3)})
            assert over.status_code == 429
            assert await memes.in_flight("capped") == 3
            single = await client.post("/memes", json={"template_id": "any", "top": "x"})
            assert single.status_code == 202  # the fourth slot: a meme and a batch share them
            failure = Failure(reason="stuck")
            for seq in range(3):
                assert await memes.transition(
                    batch_meme_id(first, seq),
                    MemeState.FAILED,
                    failure=failure,
                    batch_id=first,
                    slot="capped",
                )
            assert await memes.in_flight("capped") == 1
            assert (await client.post("/batches", json={"items": _items(4)})).status_code == 202


async def test_a_batch_mails_its_counts_and_archive_once_even_if_its_archiver_died(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README "one mail to notify_email, both once the ZIP exists" and docs/architecture.md
    "a consumer dying in between rebuilds and re-sends the same event": the second copy
    (same id, time and counts) is mailed no second time."""
    recipient = f"{uuid.uuid4().hex[:12]}@example.com"
    batch_id = str((await _submit(rig.a, 3, notify_email=recipient))["id"])
    shown = (await rig.a.get(f"/batches/{batch_id}")).json()
    assert (shown["notify_email"], shown["callback_url"]) == (recipient, None)
    images = [await _finish(rig, batch_id, seq) for seq in range(2)]
    assert await rig.memes.transition(
        batch_meme_id(batch_id, 2),
        MemeState.FAILED,
        failure=Failure(reason="stuck"),
        batch_id=batch_id,
        slot="tenant-a",
    )

    async def dies(*args: object, **kwargs: object) -> bool:
        raise ConnectionError("the consumer died before marking the batch DONE")

    with monkeypatch.context() as patched:
        patched.setattr(rig.batches, "advance", dies)
        with pytest.raises(ConnectionError):
            await rig.sweeper.sweep_once()
    interrupted = await rig.batches.get(batch_id)
    assert interrupted is not None
    assert interrupted.state is BatchState.ARCHIVING
    # The next consumer takes the stale claim over: the archive again, batch.done again.
    quick = dataclasses.replace(
        rig.sweeper, settings=rig.settings.model_copy(update={"rendering_timeout_s": 0.5})
    )
    await asyncio.sleep(0.6)
    assert await quick.sweep_once() == 1
    assert (await rig.a.get(f"/batches/{batch_id}")).json()["state"] == "DONE"

    copies = await _notifications(rig)
    assert [c.channel for c, _ in copies] == ["email", "email"]  # no webhook was asked for
    first, second = (note for note, _ in copies)
    assert first == second  # the same event, not two different ones
    assert (first.event_id, first.target) == (f"msg_{batch_id}_batch_done", recipient)
    worker = notifier(rig.aws, rig.settings)
    for _, message in copies:
        await worker.handle(message)

    [mail] = mail_to(os.environ["AWS_ENDPOINT_URL"], BACKEND, recipient)
    assert mail.source == rig.settings.email_sender
    assert mail.message["Subject"] == "Your batch is ready: 2 done, 1 failed"
    assert mail.message["Message-ID"] == f"<msg_{batch_id}_batch_done@memeforge>"
    text = mail.message.get_body(("plain",))
    assert text is not None
    assert "2 of 3 done, 1 failed" in text.get_content()
    [link] = re.findall(r"https?://\S+", text.get_content())
    async with httpx.AsyncClient() as storage:
        downloaded = await storage.get(link)
    assert downloaded.status_code == 200
    with zipfile.ZipFile(io.BytesIO(downloaded.content)) as zipped:
        names = sorted(n for n in zipped.namelist() if n != "manifest.json")
        assert [zipped.read(n) for n in names] == images
    delivered = (await rig.a.get(f"/batches/{batch_id}")).json()["deliveries"]
    assert [a["outcome"] for a in delivered["email"]] == ["delivered"]


async def test_a_batch_without_notify_email_enqueues_no_mail(rig: Rig) -> None:
    """README "One mail per ended meme (or batch) that asked"."""
    batch_id = str((await _submit(rig.a, 1))["id"])
    await _finish(rig, batch_id, 0)
    assert await rig.sweeper.sweep_once() == 1
    assert (await rig.a.get(f"/batches/{batch_id}")).json()["state"] == "DONE"
    assert await _notifications(rig) == []


async def _notifications(rig: Rig) -> list[tuple[NotificationMessage, QueueMessage]]:
    """Everything on the test's notifications queue, in the order it was sent."""
    url = await queue_url(rig.aws.sqs, rig.settings.notification_queue)
    found: list[tuple[NotificationMessage, QueueMessage]] = []
    while True:
        response = await rig.aws.sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1
        )
        messages = [QueueMessage.from_sqs(m) for m in response.get("Messages", [])]
        if not messages:
            return found
        found += [(NotificationMessage.model_validate_json(m.body), m) for m in messages]

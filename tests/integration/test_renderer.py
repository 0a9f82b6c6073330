"""The renderer as a real process against the emulator: exactly-once effect per meme.

Jobs go onto the render queue as the consumer would send them; what is checked is only
what a client or operator could see: the item, the stored objects and the queue.
"""

from __future__ import annotations

import asyncio
import io
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from memeforge_common.aws import AwsClients
from memeforge_common.items import MemeItem, MemeStore, new_item
from memeforge_common.models import (
    MemeState,
    RenderJob,
    RenderSpec,
    classic_boxes,
    output_key,
    template_key,
)
from memeforge_common.queues import queue_url
from memeforge_common.settings import Settings
from memeforge_common.templates import TemplateStore
from PIL import Image

from devenv.run.emulator import Emulator
from tests.support.memes import DEADLINE_S, wait_until_terminal
from tests.support.services import service_process

pytestmark = pytest.mark.integration

SPEC = RenderSpec(boxes=classic_boxes("once", "only"))
TENANT = "acme"


@pytest.fixture
def renderer(emulator: Emulator, resources: Settings, tmp_path: Path) -> Iterator[Path]:
    """One renderer process on this test's resources; yields its log file. Its RENDERING
    mark waits longer than any render here takes, so every render ends unmarked."""
    log = tmp_path / "renderer.log"
    unmarked = {"MEMEFORGE_RENDERING_MARK_AFTER_S": "120"}
    with service_process("memeforge_renderer", emulator, resources, log, unmarked):
        yield log


@pytest.fixture
def marking_renderer(emulator: Emulator, resources: Settings, tmp_path: Path) -> Iterator[Path]:
    """A renderer that marks every render RENDERING at once, as it does a slow one."""
    log = tmp_path / "renderer.log"
    at_once = {"MEMEFORGE_RENDERING_MARK_AFTER_S": "0"}
    with service_process("memeforge_renderer", emulator, resources, log, at_once):
        yield log


def solid(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (320, 240), colour).save(out, "JPEG", quality=95)
    return out.getvalue()


async def upload(aws: AwsClients, settings: Settings, template_id: str, data: bytes) -> str:
    return await TemplateStore(aws.s3, settings.bucket).upload(
        template_id,
        tenant=TENANT,
        name=template_id,
        data=data,
        content_type="image/jpeg",
        width=320,
        height=240,
    )


async def waiting_meme(
    store: MemeStore, template_id: str, state: MemeState = MemeState.PENDING
) -> MemeItem:
    """A meme as the consumer leaves it (PENDING; QUEUED: an older consumer), its job
    about to be sent."""
    item = new_item(uuid.uuid4().hex, template_id, SPEC, tenant=TENANT)
    await store.create(item)
    if state is not MemeState.PENDING:
        assert await store.transition(item.id, state)
    return item


async def send_job(aws: AwsClients, settings: Settings, item: MemeItem, etag: str) -> None:
    job = RenderJob(
        meme_id=item.id,
        template_key=template_key(item.template_id, TENANT),
        template_etag=etag,
        spec=SPEC,
        tenant=TENANT,
    )
    url = await queue_url(aws.sqs, settings.render_queue)
    await aws.sqs.send_message(QueueUrl=url, MessageBody=job.model_dump_json())


async def drained(aws: AwsClients, settings: Settings) -> None:
    """Until the render queue holds nothing, visible or in flight (every job settled)."""
    url = await queue_url(aws.sqs, settings.render_queue)
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_S
    while loop.time() < deadline:
        found = await aws.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)
        if all(int(found["Attributes"].get(n, "0")) == 0 for n in names):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"render queue not drained within {DEADLINE_S}s")


async def output_versions(aws: AwsClients, settings: Settings, key: str) -> list[str]:
    listed = await aws.s3.list_object_versions(Bucket=settings.bucket, Prefix=key)
    return [v["VersionId"] for v in listed.get("Versions", []) if v["Key"] == key]


async def output_bytes(aws: AwsClients, settings: Settings, key: str) -> bytes:
    got = await aws.s3.get_object(Bucket=settings.bucket, Key=key)
    async with got["Body"] as body:
        data: bytes = await body.read()
    return data


@pytest.fixture
def store(aws: AwsClients, resources: Settings) -> MemeStore:
    return MemeStore(aws.dynamodb, resources.table)


@pytest.fixture
async def versioned(aws: AwsClients, resources: Settings) -> Settings:
    """Bucket versioning on, so that every write of an output can be counted."""
    await aws.s3.put_bucket_versioning(
        Bucket=resources.bucket, VersioningConfiguration={"Status": "Enabled"}
    )
    return resources


async def redeliver(aws: AwsClients, settings: Settings) -> None:
    """Receive the one job on the render queue and hand it back unsettled, as a renderer
    that died holding it would: its next delivery has a receive count of 2."""
    url = await queue_url(aws.sqs, settings.render_queue)
    for _ in range(50):
        got = await aws.sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)
        if got.get("Messages"):
            [message] = got["Messages"]
            await aws.sqs.change_message_visibility(
                QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
            )
            return
    raise AssertionError("the job never reached the render queue")


@pytest.mark.parametrize("waiting", [MemeState.PENDING, MemeState.QUEUED])
async def test_a_fast_render_ends_its_meme_in_one_write(
    aws: AwsClients, resources: Settings, store: MemeStore, renderer: Path, waiting: MemeState
) -> None:
    """docs/architecture.md "State machine": PENDING → DONE (QUEUED → DONE for an older
    consumer's item), RENDERING only for a render still running after
    MEMEFORGE_RENDERING_MARK_AFTER_S; attempts from SQS."""
    etag = await upload(aws, resources, "quick", solid((200, 200, 40)))
    item = await waiting_meme(store, "quick", waiting)
    await send_job(aws, resources, item, etag)
    done = await wait_until_terminal(store, item.id)
    assert done.state is MemeState.DONE, done
    assert set(done.state_times) == {MemeState.PENDING, waiting, MemeState.DONE}
    assert done.attempts == 1


async def test_a_render_still_running_after_the_delay_shows_rendering(
    aws: AwsClients, resources: Settings, store: MemeStore, marking_renderer: Path
) -> None:
    etag = await upload(aws, resources, "slow", solid((40, 200, 200)))
    item = await waiting_meme(store, "slow")
    await send_job(aws, resources, item, etag)
    done = await wait_until_terminal(store, item.id)
    assert done.state is MemeState.DONE, done
    assert set(done.state_times) == {MemeState.PENDING, MemeState.RENDERING, MemeState.DONE}
    assert done.state_times[MemeState.RENDERING] <= done.state_times[MemeState.DONE]
    assert done.attempts == 1


async def test_a_duplicate_job_on_its_first_delivery_changes_nothing_a_client_sees(
    aws: AwsClients, versioned: Settings, store: MemeStore, renderer: Path
) -> None:
    """README: "Delivery is at-least-once; every state change is a conditional write ...
    so duplicates are harmless": a second copy of a DONE meme's job, delivered for the
    first time, may render again (the same bytes to the same key) but loses the ending."""
    etag = await upload(aws, versioned, "once", solid((200, 40, 40)))
    item = await waiting_meme(store, "once")
    await send_job(aws, versioned, item, etag)
    first = await wait_until_terminal(store, item.id)
    assert first.state is MemeState.DONE, first
    key = output_key(item.id, tenant=TENANT)
    rendered = await output_bytes(aws, versioned, key)

    await send_job(aws, versioned, item, etag)  # the duplicate delivery
    await drained(aws, versioned)
    again = await store.get(item.id)
    assert again == first  # same state, result, attempts and timestamps
    assert await output_bytes(aws, versioned, key) == rendered


async def test_a_redelivered_job_of_a_done_meme_is_not_rendered_again(
    aws: AwsClients, versioned: Settings, store: MemeStore, emulator: Emulator, tmp_path: Path
) -> None:
    """A job redelivered (receive count > 1) after its meme ended: the renderer reads the
    item first and settles the job without rendering or writing anything."""
    etag = await upload(aws, versioned, "ended", solid((120, 40, 200)))
    item = await waiting_meme(store, "ended")
    with service_process("memeforge_renderer", emulator, versioned, tmp_path / "first.log"):
        await send_job(aws, versioned, item, etag)
        first = await wait_until_terminal(store, item.id)
        await drained(aws, versioned)
    assert first.state is MemeState.DONE, first
    key = output_key(item.id, tenant=TENANT)
    versions = await output_versions(aws, versioned, key)
    assert len(versions) == 1

    await send_job(aws, versioned, item, etag)  # a copy the first renderer never deleted
    await redeliver(aws, versioned)
    log = tmp_path / "second.log"
    with service_process("memeforge_renderer", emulator, versioned, log):
        await drained(aws, versioned)
    assert "duplicate render job for a DONE meme" in log.read_text()
    assert await store.get(item.id) == first
    assert await output_versions(aws, versioned, key) == versions


async def test_a_meme_left_rendering_by_a_dead_renderer_is_rendered_again(
    aws: AwsClients, versioned: Settings, store: MemeStore, renderer: Path
) -> None:
    """README: "a worker that dies stops extending, and its messages reappear for another":
    the job of a meme stuck RENDERING is rendered again, its attempts SQS's receive count."""
    etag = await upload(aws, versioned, "crashed", solid((40, 200, 40)))
    item = await waiting_meme(store, "crashed")
    # What a renderer killed mid-render leaves behind: RENDERING, its job received once.
    assert await store.transition(item.id, MemeState.RENDERING, attempts=1)
    await send_job(aws, versioned, item, etag)
    await redeliver(aws, versioned)
    done = await wait_until_terminal(store, item.id)
    assert done.state is MemeState.DONE, done
    assert done.attempts == 2
    assert done.result is not None
    assert done.result.key == output_key(item.id, tenant=TENANT)
    assert len(await output_versions(aws, versioned, output_key(item.id, tenant=TENANT))) == 1


async def test_a_job_whose_template_is_gone_fails_the_meme(
    aws: AwsClients, resources: Settings, store: MemeStore, renderer: Path
) -> None:
    """README: "a missing template ... end[s] the item FAILED with a machine-readable
    failure.reason"."""
    etag = await upload(aws, resources, "gone", solid((1, 2, 3)))
    await aws.s3.delete_object(Bucket=resources.bucket, Key=template_key("gone", TENANT))
    item = await waiting_meme(store, "gone")
    await send_job(aws, resources, item, etag)
    failed = await wait_until_terminal(store, item.id)
    assert failed.state is MemeState.FAILED
    assert failed.failure is not None
    assert failed.failure.reason == "template_not_found"
    await drained(aws, resources)  # failed for good: not retried


async def test_a_replaced_template_is_rendered_from_its_new_bytes(
    aws: AwsClients, resources: Settings, store: MemeStore, renderer: Path
) -> None:
    """The renderer caches templates by ETag: a template replaced under the same id (out
    of band: the api never replaces one) is fetched again, never served from the cache
    of its old bytes, for a meme queued after the replacement."""

    async def render_with(colour: tuple[int, int, int]) -> tuple[int, ...]:
        key = template_key("replaced", TENANT)
        put = await aws.s3.put_object(Bucket=resources.bucket, Key=key, Body=solid(colour))
        etag = put["ETag"]
        item = await waiting_meme(store, "replaced")
        await send_job(aws, resources, item, etag)
        done = await wait_until_terminal(store, item.id)
        assert done.state is MemeState.DONE, done
        got = await aws.s3.get_object(
            Bucket=resources.bucket, Key=output_key(item.id, tenant=TENANT)
        )
        async with got["Body"] as body:
            image = Image.open(io.BytesIO(await body.read())).convert("RGB")
        pixel: tuple[int, ...] = image.getpixel((image.width // 2, image.height // 2))
        return pixel

    red = await render_with((220, 30, 30))
    blue = await render_with((30, 30, 220))  # same template id, new bytes, new ETag
    assert red[0] > 180 > red[2], red
    assert blue[2] > 180 > blue[0], blue


async def test_sigterm_with_jobs_in_flight_loses_none_and_renders_none_twice(
    aws: AwsClients, versioned: Settings, store: MemeStore, emulator: Emulator, tmp_path: Path
) -> None:
    """README: "SIGTERM: workers stop receiving, finish or release (visibility 0) what they
    hold within MEMEFORGE_SHUTDOWN_GRACE_S". A renderer is stopped while it works through
    20 jobs: it exits 0, and a second renderer finishes the rest, each meme once."""
    etag = await upload(aws, versioned, "busy", solid((90, 90, 160)))
    items = [await waiting_meme(store, "busy") for _ in range(20)]
    log = tmp_path / "first.log"
    with service_process("memeforge_renderer", emulator, versioned, log) as first:
        for item in items:
            await send_job(aws, versioned, item, etag)
        await wait_until_terminal(store, items[0].id)  # busy: the others are in flight
        first.send_signal(signal.SIGTERM)  # spawn() made it a group leader: as k8s would
        assert await asyncio.to_thread(first.wait, 60) == 0, log.read_text()[-3000:]
    with service_process("memeforge_renderer", emulator, versioned, tmp_path / "second.log"):
        done = [await wait_until_terminal(store, item.id) for item in items]
    assert [d.state for d in done] == [MemeState.DONE] * 20
    for item in items:
        assert len(await output_versions(aws, versioned, output_key(item.id, tenant=TENANT))) == 1

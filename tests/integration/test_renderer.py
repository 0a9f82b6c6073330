"""The renderer as a real process against the emulator: exactly-once effect per meme.

Jobs go onto the render queue as the consumer would send them; what is checked is only
what a client or operator could see: the item, the stored objects and the queue.
"""

from __future__ import annotations

import asyncio
import io
import sys
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
from devenv.run.proc import spawn, stop

pytestmark = pytest.mark.integration

SPEC = RenderSpec(boxes=classic_boxes("once", "only"))
DEADLINE_S = 90


@pytest.fixture
def renderer(emulator: Emulator, resources: Settings, tmp_path: Path) -> Iterator[Path]:
    """One renderer process on this test's resources; yields its log file."""
    log = tmp_path / "renderer.log"
    env = emulator.child_env(
        {
            "MEMEFORGE_BUCKET": resources.bucket,
            "MEMEFORGE_TABLE": resources.table,
            "MEMEFORGE_REQUEST_QUEUE": resources.request_queue,
            "MEMEFORGE_RENDER_QUEUE": resources.render_queue,
            "MEMEFORGE_RECEIVE_WAIT_S": "1",
            "MEMEFORGE_RENDER_PROCESSES": "1",
        }
    )
    proc = spawn([sys.executable, "-m", "memeforge_renderer"], env=env, log_path=str(log))
    try:
        yield log
    finally:
        stop(proc, grace=30)


def solid(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (320, 240), colour).save(out, "JPEG", quality=95)
    return out.getvalue()


async def upload(aws: AwsClients, settings: Settings, template_id: str, data: bytes) -> str:
    return await TemplateStore(aws.s3, settings.bucket).upload(
        template_id,
        name=template_id,
        data=data,
        content_type="image/jpeg",
        width=320,
        height=240,
    )


async def queued_meme(store: MemeStore, template_id: str) -> MemeItem:
    """A meme as the consumer leaves it: QUEUED, its job about to be sent."""
    item = new_item(uuid.uuid4().hex, template_id, SPEC)
    await store.create(item)
    assert await store.transition(item.id, MemeState.QUEUED)
    return item


async def send_job(aws: AwsClients, settings: Settings, item: MemeItem, etag: str) -> None:
    job = RenderJob(
        meme_id=item.id,
        template_key=template_key(item.template_id),
        template_etag=etag,
        spec=SPEC,
        output_key=output_key(item.id),
    )
    url = await queue_url(aws.sqs, settings.render_queue)
    await aws.sqs.send_message(QueueUrl=url, MessageBody=job.model_dump_json())


async def settled(store: MemeStore, meme_id: str) -> MemeItem:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_S
    while loop.time() < deadline:
        item = await store.get(meme_id)
        if item is not None and item.state.terminal:
            return item
        await asyncio.sleep(0.2)
    raise AssertionError(f"meme {meme_id} did not settle within {DEADLINE_S}s")


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


async def test_the_same_job_twice_renders_once(
    aws: AwsClients, versioned: Settings, store: MemeStore, renderer: Path
) -> None:
    """README: "Delivery is at-least-once; every state change is a conditional write ...
    so duplicates are harmless": a second copy of a DONE meme's job changes nothing."""
    etag = await upload(aws, versioned, "once", solid((200, 40, 40)))
    item = await queued_meme(store, "once")
    await send_job(aws, versioned, item, etag)
    first = await settled(store, item.id)
    assert first.state is MemeState.DONE, first
    assert first.attempts == 1
    versions = await output_versions(aws, versioned, output_key(item.id))
    assert len(versions) == 1

    await send_job(aws, versioned, item, etag)  # the duplicate delivery
    await drained(aws, versioned)
    again = await store.get(item.id)
    assert again == first  # same state, result, attempts and timestamps
    assert await output_versions(aws, versioned, output_key(item.id)) == versions


async def test_a_meme_left_rendering_by_a_dead_renderer_is_rendered_again(
    aws: AwsClients, versioned: Settings, store: MemeStore, renderer: Path
) -> None:
    """README: "a worker that dies stops extending, and its messages reappear for another":
    the job of a meme stuck RENDERING is rendered again, counting a second attempt."""
    etag = await upload(aws, versioned, "crashed", solid((40, 200, 40)))
    item = await queued_meme(store, "crashed")
    # What a renderer killed mid-render leaves behind: RENDERING, one attempt counted.
    assert await store.transition(item.id, MemeState.RENDERING, count_attempt=True)
    await send_job(aws, versioned, item, etag)
    done = await settled(store, item.id)
    assert done.state is MemeState.DONE, done
    assert done.attempts == 2
    assert done.result is not None
    assert done.result.key == output_key(item.id)
    assert len(await output_versions(aws, versioned, output_key(item.id))) == 1


async def test_a_job_whose_template_is_gone_fails_the_meme(
    aws: AwsClients, resources: Settings, store: MemeStore, renderer: Path
) -> None:
    """README: "a missing template ... end[s] the item FAILED with a machine-readable
    failure.reason"."""
    etag = await upload(aws, resources, "gone", solid((1, 2, 3)))
    await aws.s3.delete_object(Bucket=resources.bucket, Key=template_key("gone"))
    item = await queued_meme(store, "gone")
    await send_job(aws, resources, item, etag)
    failed = await settled(store, item.id)
    assert failed.state is MemeState.FAILED
    assert failed.failure is not None
    assert failed.failure.reason == "template_not_found"
    await drained(aws, resources)  # failed for good: not retried


async def test_a_replaced_template_is_rendered_from_its_new_bytes(
    aws: AwsClients, resources: Settings, store: MemeStore, renderer: Path
) -> None:
    """The renderer caches templates by ETag: a template replaced under the same id is
    fetched again, never served from the cache of its old bytes."""

    async def render_with(colour: tuple[int, int, int]) -> tuple[int, ...]:
        etag = await upload(aws, resources, "replaced", solid(colour))
        item = await queued_meme(store, "replaced")
        await send_job(aws, resources, item, etag)
        done = await settled(store, item.id)
        assert done.state is MemeState.DONE, done
        got = await aws.s3.get_object(Bucket=resources.bucket, Key=output_key(item.id))
        async with got["Body"] as body:
            image = Image.open(io.BytesIO(await body.read())).convert("RGB")
        pixel: tuple[int, ...] = image.getpixel((image.width // 2, image.height // 2))
        return pixel

    red = await render_with((220, 30, 30))
    blue = await render_with((30, 30, 220))  # same template id, new bytes, new ETag
    assert red[0] > 180 > red[2], red
    assert blue[2] > 180 > blue[0], blue

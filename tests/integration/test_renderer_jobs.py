"""The renderer's job handling in-process against the real emulator: keys derived from
the meme id, templates pinned to the ETag a meme was queued with."""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from collections.abc import AsyncIterator

import pytest
from memeforge_common.aws import AwsClients
from memeforge_common.items import MemeStore, new_item
from memeforge_common.models import (
    MemeState,
    RenderJob,
    RenderSpec,
    classic_boxes,
    output_key,
    template_key,
)
from memeforge_common.outputs import OutputStore
from memeforge_common.queues import QueueMessage
from memeforge_common.settings import Settings
from memeforge_common.templates import TemplateStore
from memeforge_renderer.cache import TemplateBytesCache
from memeforge_renderer.pool import RenderPool
from memeforge_renderer.worker import Renderer
from PIL import Image
from prometheus_client import REGISTRY

from tests.support.images import animated, gradient, store_gradient_template
from tests.support.notifications import endings_for

pytestmark = pytest.mark.integration

SPEC = RenderSpec(boxes=classic_boxes("top", "bottom"))
TENANT = "acme"


@pytest.fixture
async def pool() -> AsyncIterator[RenderPool]:
    pool = RenderPool(1)
    await pool.start()
    yield pool
    await pool.close()


@pytest.fixture
def store(aws: AwsClients, resources: Settings) -> MemeStore:
    return MemeStore(aws.dynamodb, resources.table)


@pytest.fixture
def templates(aws: AwsClients, resources: Settings) -> TemplateStore:
    return TemplateStore(aws.s3, resources.bucket)


@pytest.fixture
async def renderer(
    aws: AwsClients,
    resources: Settings,
    store: MemeStore,
    templates: TemplateStore,
    pool: RenderPool,
) -> Renderer:
    outputs = OutputStore(aws.s3, resources.bucket)
    cache = TemplateBytesCache(1 << 20)
    endings = await endings_for(aws, resources, store)
    return Renderer(store, templates, outputs, pool, cache, endings, max_source_pixels=10**7)


async def _queued(store: MemeStore) -> str:
    """A meme whose job is on the render queue: PENDING (the consumer writes no QUEUED)."""
    item = new_item(uuid.uuid4().hex, "tpl", SPEC, tenant=TENANT)
    await store.create(item)
    return item.id


def _job(meme_id: str, etag: str, **extra: str) -> QueueMessage:
    job = RenderJob(
        meme_id=meme_id,
        template_key=template_key("tpl", TENANT),
        template_etag=etag,
        spec=SPEC,
        tenant=TENANT,
    )
    body = json.loads(job.model_dump_json()) | extra
    return QueueMessage(message_id="m", receipt_handle="r", body=json.dumps(body), receive_count=1)


async def _read(aws: AwsClients, bucket: str, key: str) -> bytes:
    response = await aws.s3.get_object(Bucket=bucket, Key=key)
    async with response["Body"] as body:
        return await body.read()


async def test_a_forged_job_naming_another_key_cannot_write_there(
    aws: AwsClients,
    resources: Settings,
    store: MemeStore,
    templates: TemplateStore,
    renderer: Renderer,
) -> None:
    """docs/architecture.md invariant 9: "Keys are derived, not trusted"."""
    etag = await store_gradient_template(templates, "tpl", tenant=TENANT, size=(64, 48))
    victim = output_key(uuid.uuid4().hex, tenant=TENANT)
    await aws.s3.put_object(Bucket=resources.bucket, Key=victim, Body=b"someone else's meme")
    meme_id = await _queued(store)

    await renderer.handle(_job(meme_id, etag, output_key=victim))

    assert await _read(aws, resources.bucket, victim) == b"someone else's meme"
    item = await store.get(meme_id)
    assert item is not None
    assert item.state is MemeState.DONE
    assert item.result is not None
    assert item.result.key == output_key(meme_id, tenant=TENANT)
    assert (await _read(aws, resources.bucket, output_key(meme_id, tenant=TENANT)))[
        :2
    ] == b"\xff\xd8"


async def test_a_job_for_a_template_that_changed_since_fails_template_changed(
    aws: AwsClients, resources: Settings, store: MemeStore, renderer: Renderer
) -> None:
    """docs/architecture.md invariant 9: template read at its queued ETag."""
    await aws.s3.put_object(
        Bucket=resources.bucket, Key=template_key("tpl", TENANT), Body=gradient(32, 32)
    )
    queued_with = (
        await aws.s3.head_object(Bucket=resources.bucket, Key=template_key("tpl", TENANT))
    )["ETag"]
    # Replaced out of band (the api never replaces a template) after the job was queued.
    await aws.s3.put_object(
        Bucket=resources.bucket, Key=template_key("tpl", TENANT), Body=gradient(48, 48)
    )
    meme_id = await _queued(store)

    await renderer.handle(_job(meme_id, queued_with))

    item = await store.get(meme_id)
    assert item is not None
    assert item.state is MemeState.FAILED
    assert item.failure is not None
    assert item.failure.reason == "template_changed"
    assert "templates/" not in item.failure.detail


def _template_reads() -> float:
    """GetObject requests this process has sent (its own AWS request counter)."""
    labels = {"service": "s3", "operation": "GetObject"}
    return REGISTRY.get_sample_value("memeforge_aws_requests_total", labels) or 0.0


async def test_jobs_that_miss_the_template_cache_together_fetch_it_once(
    store: MemeStore, templates: TemplateStore, renderer: Renderer
) -> None:
    """A burst of jobs on a template new to the process: one GetObject, every meme DONE."""
    etag = await store_gradient_template(templates, "tpl", tenant=TENANT, size=(64, 48))
    memes = [await _queued(store) for _ in range(4)]
    before = _template_reads()

    await asyncio.gather(*(renderer.handle(_job(meme_id, etag)) for meme_id in memes))

    assert _template_reads() - before == 1
    for meme_id in memes:
        item = await store.get(meme_id)
        assert item is not None
        assert item.state is MemeState.DONE


async def test_jobs_that_share_a_fetch_share_its_template_not_found(
    store: MemeStore, renderer: Renderer
) -> None:
    memes = [await _queued(store) for _ in range(3)]

    await asyncio.gather(*(renderer.handle(_job(meme_id, '"gone"')) for meme_id in memes))

    for meme_id in memes:
        item = await store.get(meme_id)
        assert item is not None
        assert item.state is MemeState.FAILED
        assert item.failure is not None
        assert item.failure.reason == "template_not_found"


ANIMATED_SPEC = RenderSpec(boxes=classic_boxes("top", "bottom"), format="gif")


async def _animated_job(
    aws: AwsClients, resources: Settings, store: MemeStore, data: bytes
) -> tuple[str, QueueMessage]:
    """A render job for a GIF put straight into the bucket (no upload checks), as a
    crafted or older message would name."""
    template_id = f"anim-{uuid.uuid4().hex[:8]}"
    key = template_key(template_id, TENANT)
    put = await aws.s3.put_object(Bucket=resources.bucket, Key=key, Body=data)
    item = new_item(uuid.uuid4().hex, template_id, ANIMATED_SPEC, tenant=TENANT)
    await store.create(item)
    job = RenderJob(
        meme_id=item.id,
        template_key=key,
        template_etag=put["ETag"],
        spec=ANIMATED_SPEC,
        tenant=TENANT,
    )
    message = QueueMessage(
        message_id="m", receipt_handle="r", body=job.model_dump_json(), receive_count=1
    )
    return item.id, message


async def test_an_animated_job_ends_done_with_an_animated_gif(
    aws: AwsClients, resources: Settings, store: MemeStore, renderer: Renderer
) -> None:
    meme_id, message = await _animated_job(aws, resources, store, animated(count=6))
    await renderer.handle(message)
    item = await store.get(meme_id)
    assert item is not None
    assert item.state is MemeState.DONE
    assert item.result is not None
    assert item.result.report is not None
    assert (item.result.content_type, item.result.report.frames) == ("image/gif", 6)
    data = await _read(aws, resources.bucket, item.result.key)
    assert item.result.key.endswith(".gif")
    assert Image.open(io.BytesIO(data)).n_frames == 6


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (animated(count=301, size=(16, 16), durations=20), "too_many_frames"),
        (animated(count=4, durations=10_000), "animation_too_long"),
        (animated(count=300, size=(400, 400), durations=20), "image_too_large"),
    ],
    ids=["frames", "duration", "pixels"],
)
async def test_a_crafted_job_over_an_animation_cap_fails_with_its_reason(
    aws: AwsClients,
    resources: Settings,
    store: MemeStore,
    renderer: Renderer,
    data: bytes,
    reason: str,
) -> None:
    meme_id, message = await _animated_job(aws, resources, store, data)
    await renderer.handle(message)  # acknowledged: a FAILED item, not a retry
    item = await store.get(meme_id)
    assert item is not None
    assert item.state is MemeState.FAILED
    assert item.failure is not None
    assert item.failure.reason == reason

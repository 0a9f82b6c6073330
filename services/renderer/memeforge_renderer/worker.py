"""Render one job: template (cached) → engine (process pool) → S3 → item DONE.

Permanent problems (missing template, undecodable image) end the item FAILED with a
reason and acknowledge the message; anything else raises, so the message is retried
and, after maxReceiveCount, dead-lettered.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from memeforge_common.animation import AnimationLimits
from memeforge_common.endings import Endings
from memeforge_common.items import MemeStore
from memeforge_common.logs import bound
from memeforge_common.metrics import RENDER_STAGE_SECONDS
from memeforge_common.models import Failure, MemeResult, MemeState, RenderJob
from memeforge_common.outputs import OutputStore
from memeforge_common.queues import QueueMessage
from memeforge_common.templates import TemplateChanged, TemplateMissing, TemplateStore
from memeforge_common.tracing import child_of, from_attributes, trace_id
from memeforge_common.worker import PoisonMessage
from pydantic import ValidationError

from memeforge_renderer import engine
from memeforge_renderer.cache import TemplateBytesCache
from memeforge_renderer.pool import RenderPool, render_in_pool

log = logging.getLogger("memeforge.renderer")


@dataclass
class Renderer:
    store: MemeStore
    templates: TemplateStore
    outputs: OutputStore
    pool: RenderPool
    cache: TemplateBytesCache
    endings: Endings
    max_source_pixels: int = field(kw_only=True)
    animation_limits: AnimationLimits = field(default_factory=AnimationLimits, kw_only=True)

    async def handle(self, message: QueueMessage) -> None:
        try:
            job = RenderJob.model_validate_json(message.body)
        except ValidationError as err:
            raise PoisonMessage(f"invalid render job: {err.errors()[0].get('msg')}") from err
        traceparent = child_of(from_attributes(message.attributes))
        with bound(
            meme_id=job.meme_id, message_id=message.message_id, trace_id=trace_id(traceparent)
        ):
            await self._render(job, traceparent)

    async def _render(self, job: RenderJob, traceparent: str) -> None:
        if not await self.store.transition(job.meme_id, MemeState.RENDERING, count_attempt=True):
            item = await self.store.get(job.meme_id)
            if item is None:
                raise PoisonMessage(f"unknown meme id {job.meme_id}")
            if item.state.terminal:
                log.info("duplicate render job for a %s meme", item.state.value)
                return
            # PENDING: the job overtook its own QUEUED write (cannot happen in order,
            # but costs nothing to survive): retry later.
            raise RuntimeError(f"cannot start rendering: item is {item.state.value}")
        template_id = job.template_id
        try:
            template = await self._template(job.template_key, job.template_etag)
        except TemplateMissing:
            detail = f"template {template_id!r} no longer exists"
            await self._fail(job, traceparent, Failure(reason="template_not_found", detail=detail))
            return
        except TemplateChanged:
            # Not rendered with other bytes than the meme was made for (its captions may
            # have been fitted to the old layout); the bucket keeps no old versions.
            detail = f"template {template_id!r} changed after the meme was requested"
            await self._fail(job, traceparent, Failure(reason="template_changed", detail=detail))
            return
        try:
            async with self.pool.process(animated=job.spec.keeps_animation) as executor:
                output = await render_in_pool(
                    executor,
                    template,
                    job.spec,
                    template_key=job.template_key,
                    etag=job.template_etag,
                    max_source_pixels=self.max_source_pixels,
                    animation_limits=self.animation_limits,
                )
        except engine.RenderError as err:
            await self._fail(job, traceparent, Failure(reason=err.reason, detail=str(err)))
            return
        key = await self.outputs.save(
            job.meme_id, job.spec.format, output.data, output.content_type, tenant=job.tenant
        )
        for stage, ms in output.report.get("timings_ms", {}).items():
            RENDER_STAGE_SECONDS.labels(stage).observe(ms / 1000)
        thumbnail_key = None
        if output.thumbnail is not None:
            thumbnail_key = await self.outputs.save(
                job.meme_id,
                job.spec.format,
                output.thumbnail,
                output.content_type,
                tenant=job.tenant,
                thumbnail=True,
            )
        result = MemeResult(
            key=key,
            content_type=output.content_type,
            bytes=len(output.data),
            width=output.width,
            height=output.height,
            report=output.report,
            thumbnail_key=thumbnail_key,
        )
        done = await self.endings.end(
            job.meme_id,
            MemeState.DONE,
            tenant=job.tenant,
            notify=job.notify,
            batch_id=job.batch_id,
            traceparent=traceparent,
            slot=job.in_flight_slot,
            result=result,
        )
        if done:
            timings = output.report.get("timings_ms")
            log.info("rendered", extra={"bytes": result.bytes, "timings_ms": timings})

    async def _template(self, key: str, etag: str) -> bytes:
        """The template as it was when the job was queued (its ETag is pinned)."""
        cached = self.cache.get(key, etag)
        if cached is not None:
            return cached
        data = await self.templates.fetch(key, etag)
        self.cache.put(key, etag, data)
        return data

    async def _fail(self, job: RenderJob, traceparent: str, failure: Failure) -> None:
        log.warning("render failed: %s", failure.reason, extra={"detail": failure.detail})
        await self.endings.end(
            job.meme_id,
            MemeState.FAILED,
            tenant=job.tenant,
            notify=job.notify,
            batch_id=job.batch_id,
            traceparent=traceparent,
            slot=job.in_flight_slot,
            failure=failure,
        )

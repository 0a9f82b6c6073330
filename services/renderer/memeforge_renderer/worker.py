"""Render one job: template (cached) → engine (process pool) → S3 → item DONE.

One conditional write ends the meme, from PENDING (QUEUED on an older consumer's item) or
(a render marked slow, a redelivered job) RENDERING; its ``attempts`` are the job's SQS
receive count. Only a redelivered job
(receive count > 1) reads the item first, so a meme that ended is not rendered again; a
duplicate job on its first delivery renders the same bytes to the same key and loses the
ending's condition (docs/architecture.md).

Permanent problems (missing template, undecodable image) end the item FAILED with a
reason and acknowledge the message; anything else raises, so the message is retried
and, after maxReceiveCount, dead-lettered.
"""

from __future__ import annotations

import asyncio
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
from memeforge_renderer.marking import RenderingMark
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
    # A render still running after this long is marked RENDERING (marking.py).
    rendering_mark_after_s: float = field(default=1.0, kw_only=True)
    # Template fetches under way, by (key, ETag): concurrent misses share one GetObject.
    _fetching: dict[tuple[str, str], asyncio.Future[bytes]] = field(
        default_factory=dict, init=False, repr=False
    )

    async def handle(self, message: QueueMessage) -> None:
        try:
            job = RenderJob.model_validate_json(message.body)
        except ValidationError as err:
            raise PoisonMessage(f"invalid render job: {err.errors()[0].get('msg')}") from err
        traceparent = child_of(from_attributes(message.attributes))
        with bound(
            meme_id=job.meme_id, message_id=message.message_id, trace_id=trace_id(traceparent)
        ):
            await self._render(job, traceparent, message.receive_count)

    async def _render(self, job: RenderJob, traceparent: str, receives: int) -> None:
        if receives > 1 and await self._ended_before(job.meme_id):
            return
        mark = RenderingMark(
            lambda: self.store.transition(job.meme_id, MemeState.RENDERING, attempts=receives),
            self.rendering_mark_after_s,
        )
        async with mark:
            outcome, timings = await self._outcome(job)
        if isinstance(outcome, Failure):
            log.warning("render failed: %s", outcome.reason, extra={"detail": outcome.detail})
        done = await self.endings.end(
            job.meme_id,
            MemeState.FAILED if isinstance(outcome, Failure) else MemeState.DONE,
            tenant=job.tenant,
            notify=job.notify,
            batch_id=job.batch_id,
            traceparent=traceparent,
            slot=job.in_flight_slot,
            result=outcome if isinstance(outcome, MemeResult) else None,
            failure=outcome if isinstance(outcome, Failure) else None,
            attempts=receives,
        )
        if done and isinstance(outcome, MemeResult):
            # Logged only for a won DONE write: the chaos drill counts these lines.
            log.info("rendered", extra={"bytes": outcome.bytes, "timings_ms": timings})
        elif not done and receives == 1:
            # A first delivery's ending lost: a duplicate job ended the meme first (the
            # same bytes went to the same key), or the item is gone.
            await self._ended_before(job.meme_id)

    async def _ended_before(self, meme_id: str) -> bool:
        """Whether the meme has ended already (a redelivered or duplicate job): the one
        read a job pays, and only when it may be a repeat. Raises unless the meme is
        terminal or may be rendered (any live state)."""
        item = await self.store.get(meme_id)
        if item is None:
            raise PoisonMessage(f"unknown meme id {meme_id}")
        if item.state.terminal:
            log.info("duplicate render job for a %s meme", item.state.value)
            return True
        return False

    async def _outcome(self, job: RenderJob) -> tuple[MemeResult | Failure, dict[str, float]]:
        """Render and store the meme: its result and the engine's stage timings (ms), or
        the permanent failure that ends it."""
        template_id = job.template_id
        try:
            template = await self._template(job.template_key, job.template_etag)
        except TemplateMissing:
            detail = f"template {template_id!r} no longer exists"
            return Failure(reason="template_not_found", detail=detail), {}
        except TemplateChanged:
            # Not rendered with other bytes than the meme was made for (its captions may
            # have been fitted to the old layout); the bucket keeps no old versions.
            detail = f"template {template_id!r} changed after the meme was requested"
            return Failure(reason="template_changed", detail=detail), {}
        try:
            async with self.pool.process(animated=job.spec.keeps_animation) as process:
                output = await render_in_pool(
                    process,
                    template,
                    job.spec,
                    template_key=job.template_key,
                    etag=job.template_etag,
                    max_source_pixels=self.max_source_pixels,
                    animation_limits=self.animation_limits,
                )
        except engine.RenderError as err:
            return Failure(reason=err.reason, detail=str(err)), {}
        key = await self.outputs.save(
            job.meme_id, job.spec.format, output.data, output.content_type, tenant=job.tenant
        )
        timings = output.report.get("timings_ms", {})
        for stage, ms in timings.items():
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
        return result, timings

    async def _template(self, key: str, etag: str) -> bytes:
        """The template as it was when the job was queued (its ETag is pinned). Jobs
        that miss the cache together (a burst on a template new to this process) wait
        for one fetch, and share its answer, its TemplateMissing or its error."""
        cached = self.cache.get(key, etag)
        if cached is not None:
            return cached
        fetch = self._fetching.get((key, etag))
        if fetch is None:
            fetch = asyncio.ensure_future(self._fetch(key, etag))
            self._fetching[(key, etag)] = fetch
            fetch.add_done_callback(lambda done: self._fetched(key, etag, done))
        # Shielded: a job abandoned at its deadline leaves the fetch to the others.
        return await asyncio.shield(fetch)

    async def _fetch(self, key: str, etag: str) -> bytes:
        data = await self.templates.fetch(key, etag)
        self.cache.put(key, etag, data)
        return data

    def _fetched(self, key: str, etag: str, fetch: asyncio.Future[bytes]) -> None:
        del self._fetching[(key, etag)]
        if not fetch.cancelled():
            fetch.exception()  # seen, even if every job waiting for it was abandoned

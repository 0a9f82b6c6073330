"""Batches: many memes in one request, their counts, their items, and one ZIP of them.

``POST /batches`` writes, in this order: the request (every item's resolved spec) to S3,
the batch record (SUBMITTING), each meme item (PENDING), then the request messages, and
marks the batch RUNNING. Whatever it dies after, nothing accepted is lost: a batch left
SUBMITTING is finished from its stored request by the consumer's batch sweeper, and an
item written but not enqueued is re-sent by the meme sweeper (docs/architecture.md,
"Batches").
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Response, status
from fastapi.responses import RedirectResponse
from memeforge_common.batches import BatchStore
from memeforge_common.fanout import fan_out
from memeforge_common.items import InFlightCapReached, InvalidCursor
from memeforge_common.models import (
    MEME_ID_PATTERN,
    Batch,
    BatchEntry,
    BatchRequest,
    BatchState,
    utcnow,
)
from memeforge_common.templates import TemplateInfo, TemplateStore
from memeforge_common.tracing import child_of, trace_id

from memeforge_api.auth import MemesRead, MemesWrite, Principal
from memeforge_api.deps import ServicesDep
from memeforge_api.idempotency import IdempotencyConflict, fingerprint
from memeforge_api.presign import PRESIGNED_RESPONSES, RedirectQuery, presigned_answer
from memeforge_api.problems import AUTHENTICATED, Problem, problem_responses
from memeforge_api.routes.memes import in_flight_problem, notify_for, spec_on
from memeforge_api.schemas import BatchView, CreateBatch, MemePage, MemeView

router = APIRouter(
    prefix="/batches", tags=["batches"], responses=problem_responses(*AUTHENTICATED, 422)
)
log = logging.getLogger("memeforge.api")

BatchIdPath = Annotated[str, Path(pattern=MEME_ID_PATTERN)]


async def _owned(batches: BatchStore, batch_id: str, caller: Principal) -> Batch:
    """The caller's batch; another tenant's is as absent as one that never existed."""
    batch = await batches.get(batch_id)
    if batch is None or batch.tenant != caller.tenant:
        raise Problem(404, "batch-not-found", "No such batch", f"batch {batch_id!r}")
    return batch


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=BatchView,
    # 400 bad-request (a body that is not JSON), 404 template-not-found, 409
    # idempotency-key-reused; 422 validation-failed (over 500 items, a bad item),
    # too-many-captions or webhook-not-configured.
    responses=problem_responses(400, 404, 409, 413),  # 429 too-many-in-flight: AUTHENTICATED
)
async def create_batch(
    body: CreateBatch,
    caller: MemesWrite,
    response: Response,
    services: ServicesDep,
    idempotency_key: Annotated[
        str | None,
        Header(min_length=1, max_length=255, description="same key + same body → same batch"),
    ] = None,
    traceparent: Annotated[
        str | None,
        Header(description="W3C trace context to continue; anything else starts a new trace"),
    ] = None,
) -> BatchView:
    if services.backlog is not None:
        await services.backlog.admit()  # 503 overloaded while the queues are backed up, as /memes
    batch_id = uuid.uuid4().hex
    if idempotency_key is not None:
        try:
            claim = await services.idempotency.claim(
                caller.tenant,
                idempotency_key,
                fingerprint("batch\n" + body.model_dump_json()),
                batch_id,
            )
        except IdempotencyConflict as err:
            raise Problem(
                409,
                "idempotency-key-reused",
                "Idempotency-Key already used with a different request",
            ) from err
        batch_id = claim.meme_id
        if claim.replay:
            response.headers["Idempotent-Replayed"] = "true"
            existing = await services.batches.get(batch_id)
            if existing is not None:
                # Written by the first request; a fan-out it left unfinished is the
                # batch sweeper's to finish.
                response.headers["Location"] = f"/batches/{batch_id}"
                return BatchView.of(existing)
    notify = await notify_for(
        services.endpoints, caller.tenant, body.callback_url, body.notify_email
    )
    request = BatchRequest(items=await _entries(body, services.templates, caller.tenant))
    trace = child_of(traceparent)
    now = utcnow()
    retention = timedelta(days=services.settings.retention_days)
    batch = Batch(
        id=batch_id,
        tenant=caller.tenant,
        state=BatchState.SUBMITTING,
        total=len(request.items),
        created_at=now,
        updated_at=now,
        expires_at=now.replace(microsecond=0) + retention,
        traceparent=trace,
        notify=notify,
        counted=services.settings.max_in_flight_per_tenant > 0,
    )
    await services.outputs.save_batch_request(batch_id, caller.tenant, request)
    try:
        written = await services.store.create_batch(
            batch, services.settings.max_in_flight_per_tenant
        )
    except InFlightCapReached as err:
        raise in_flight_problem(services.settings, batch.total) from err
    if written:
        await fan_out(
            batch, request, services.store, services.batches, services.requests, retention=retention
        )
        log.info(
            "batch requested",
            extra={"batch_id": batch_id, "items": batch.total, "trace_id": trace_id(trace)},
        )
    # Else the SDK retried a PutItem whose first attempt had written it: that request
    # is the one fanning out.
    response.headers["Location"] = f"/batches/{batch_id}"
    response.headers["traceparent"] = trace
    return BatchView.of(await services.batches.get(batch_id) or batch)


async def _entries(body: CreateBatch, templates: TemplateStore, tenant: str) -> list[BatchEntry]:
    """Each item's spec, as POST /memes would make it: a template with captions is
    looked up once per batch, not once per item."""
    wanted = sorted({item.template_id for item in body.items if item.captions is not None})
    found = await asyncio.gather(*(templates.find(t, tenant) for t in wanted))
    layouts: dict[str, TemplateInfo | None] = dict(zip(wanted, found, strict=True))
    return [
        BatchEntry(
            template_id=item.template_id,
            spec=(
                item.render_spec()
                if item.captions is None
                else spec_on(item, layouts[item.template_id], where=f"items[{seq}]: ")
            ),
        )
        for seq, item in enumerate(body.items)
    ]


@router.get("/{batch_id}", response_model=BatchView, responses=problem_responses(404))
async def get_batch(batch_id: BatchIdPath, caller: MemesRead, services: ServicesDep) -> BatchView:
    """Counts by state, from the batch's counters (one read, whatever its size)."""
    return BatchView.of(await _owned(services.batches, batch_id, caller))


@router.get(
    "/{batch_id}/items",
    response_model=MemePage,
    responses=problem_responses(400, 404),
)
async def list_batch_items(
    batch_id: BatchIdPath,
    caller: MemesRead,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
) -> MemePage:
    """The batch's memes in the order they were given; pass ``next_cursor`` back as
    ``?cursor=``."""
    await _owned(services.batches, batch_id, caller)
    try:
        items, next_cursor = await services.store.batch_page(batch_id, limit=limit, cursor=cursor)
    except InvalidCursor as err:
        raise Problem(400, "invalid-cursor", "Invalid cursor", "pass back a next_cursor") from err
    return MemePage(items=[MemeView.of(i) for i in items], next_cursor=next_cursor)


@router.get(
    "/{batch_id}/archive",
    status_code=status.HTTP_307_TEMPORARY_REDIRECT,
    response_class=RedirectResponse,
    responses=PRESIGNED_RESPONSES | problem_responses(404, 409),  # 409 batch-not-ready
)
async def get_batch_archive(
    batch_id: BatchIdPath,
    caller: MemesRead,
    services: ServicesDep,
    redirect: RedirectQuery = True,
) -> Response:
    """A ZIP of every DONE item's image, built once after the batch's last item ended."""
    batch = await _owned(services.batches, batch_id, caller)
    if batch.archive is None:
        raise Problem(
            409,
            "batch-not-ready",
            "Batch archive not available yet",
            f"batch is {batch.state.value}",
            state=batch.state.value,
        )
    url = await services.outputs.presigned_url(batch.archive.key, services.settings.presign_ttl_s)
    return presigned_answer(url, services.settings.presign_ttl_s, redirect=redirect)

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Header, Path, Query, Request, Response, status
from fastapi.responses import RedirectResponse, StreamingResponse
from memeforge_common.endpoints import EndpointCache
from memeforge_common.items import (
    InFlightCapReached,
    InvalidCursor,
    ItemExists,
    ItemMoved,
    MemeStore,
    new_item,
)
from memeforge_common.limits import MAX_WAIT_S
from memeforge_common.models import (
    MEME_ID_PATTERN,
    MemeItem,
    MemeState,
    MemeStatus,
    Notify,
    RenderSpec,
    RequestMessage,
)
from memeforge_common.outputs import OutputStore
from memeforge_common.publishers import PublishFailed
from memeforge_common.settings import Settings
from memeforge_common.templates import TemplateInfo, TemplateStore
from memeforge_common.tracing import child_of, trace_id

from memeforge_api.auth import MemesRead, MemesWrite, Principal
from memeforge_api.deps import ServicesDep
from memeforge_api.idempotency import IdempotencyConflict, fingerprint
from memeforge_api.presign import PRESIGNED_RESPONSES, RedirectQuery, presigned_answer
from memeforge_api.problems import AUTHENTICATED, Problem, problem_responses
from memeforge_api.schemas import CreateMeme, MemeBody, MemePage, MemeView
from memeforge_api.waiting import current, event_stream, long_poll

router = APIRouter(
    prefix="/memes", tags=["memes"], responses=problem_responses(*AUTHENTICATED, 422)
)
log = logging.getLogger("memeforge.api")

MemeIdPath = Annotated[str, Path(pattern=MEME_ID_PATTERN)]
IN_FLIGHT_RETRY_AFTER_S = 2  # about one render: when a slot is likely to be free again
DELETE_TRIES = 3  # reads of an item that keeps moving under a DELETE


def _not_found(meme_id: str) -> Problem:
    return Problem(404, "meme-not-found", "No such meme", f"meme {meme_id!r}")


_Status = TypeVar("_Status", bound=MemeStatus)


def _visible(status: _Status | None, meme_id: str, caller: Principal) -> _Status:
    """The caller's meme; another tenant's meme is as absent as one that never existed
    (the same check for an item read and for a status the watcher read)."""
    if status is None or status.tenant != caller.tenant:
        raise _not_found(meme_id)
    return status


async def _owned(store: MemeStore, meme_id: str, caller: Principal) -> MemeItem:
    return _visible(await store.get(meme_id), meme_id, caller)


@router.get("", response_model=MemePage, responses=problem_responses(400))
async def list_memes(
    caller: MemesRead,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
) -> MemePage:
    """The caller's memes, newest first; pass ``next_cursor`` back as ``?cursor=``."""
    try:
        items, next_cursor = await services.store.page(caller.tenant, limit=limit, cursor=cursor)
    except InvalidCursor as err:
        raise Problem(400, "invalid-cursor", "Invalid cursor", "pass back a next_cursor") from err
    return MemePage(items=[MemeView.of(i) for i in items], next_cursor=next_cursor)


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=MemeView,
    responses=problem_responses(400, 404, 409, 413),
)
async def create_meme(
    body: CreateMeme,
    caller: MemesWrite,
    response: Response,
    services: ServicesDep,
    idempotency_key: Annotated[
        str | None,
        Header(min_length=1, max_length=255, description="same key + same body → same meme"),
    ] = None,
    traceparent: Annotated[
        str | None,
        Header(description="W3C trace context to continue; anything else starts a new trace"),
    ] = None,
) -> MemeView:
    """Write the PENDING item first, then enqueue: a lost enqueue leaves a PENDING item
    that the consumer's sweeper finds, whereas the reverse order could lose the meme."""
    if services.backlog is not None:
        await services.backlog.admit()
    notify = await notify_for(
        services.endpoints, caller.tenant, body.callback_url, body.notify_email
    )
    meme_id = uuid.uuid4().hex
    replay = False
    if idempotency_key is not None:
        try:
            claim = await services.idempotency.claim(
                caller.tenant, idempotency_key, fingerprint(body.model_dump_json()), meme_id
            )
        except IdempotencyConflict as err:
            raise Problem(
                409,
                "idempotency-key-reused",
                "Idempotency-Key already used with a different request",
            ) from err
        meme_id, replay = claim.meme_id, claim.replay
    trace = child_of(traceparent)
    item = new_item(
        meme_id,
        body.template_id,
        await _spec_for(body, services.templates, caller.tenant),
        trace,
        tenant=caller.tenant,
        retention=timedelta(days=services.settings.retention_days),
        notify=notify,
        counted=services.settings.max_in_flight_per_tenant > 0,
    )
    try:
        if item.counted:
            await services.store.create_counted(item, services.settings.max_in_flight_per_tenant)
        else:
            await services.store.create(item)
        replay = False  # the claim's first request never wrote it: this one did
    except InFlightCapReached as err:
        raise in_flight_problem(services.settings) from err
    except ItemExists:
        # The id is ours (a fresh uuid, or this key's claim). A replay: the first request
        # wrote the item (and enqueues it, or the sweeper will). Otherwise: the SDK
        # retried a PutItem whose first attempt had written it. Either way, answer with
        # the item as it is now.
        existing = await services.store.get(meme_id)
        if existing is None:
            raise
        item = existing
    if not replay:
        try:
            await services.requests.publish(RequestMessage.of(item), trace)
        except PublishFailed:
            # The item is written: the sweeper re-sends the request of a PENDING item.
            log.warning("request not enqueued; the sweeper will", extra={"meme_id": item.id})
        response.headers["traceparent"] = trace
        services.watcher.hurry()
        log.info("meme requested", extra={"meme_id": item.id, "trace_id": trace_id(trace)})
    if replay:
        response.headers["Idempotent-Replayed"] = "true"
    response.headers["Location"] = f"/memes/{item.id}"
    return MemeView.of(item)


async def notify_for(
    endpoints: EndpointCache, tenant: str, callback_url: str | None, email: str | None
) -> Notify | None:
    """Where a meme's (or batch's) ending is announced: its own callback_url, else the
    tenant's default endpoint; webhooks need the tenant's signing secret, so a
    callback_url without one is refused now rather than never delivered."""
    endpoint = await endpoints.get(tenant)
    url = callback_url or (endpoint.url if endpoint else None)
    if callback_url and endpoint is None:
        raise Problem(
            422,
            "webhook-not-configured",
            "No webhook signing secret for this tenant",
            "an admin registers one: python -m memeforge_common.endpoints set --tenant …",
        )
    if url is None and email is None:
        return None
    return Notify(callback_url=url, email=email)


def in_flight_problem(settings: Settings, wanted: int = 1) -> Problem:
    """The tenant's in-flight cap has no room for ``wanted`` more memes (one, or a batch)."""
    cap = settings.max_in_flight_per_tenant
    return Problem(
        429,
        "too-many-in-flight",
        "Too many memes in flight for this tenant",
        f"at most {cap} at once, {wanted} asked for; retry when some are done",
        headers={"Retry-After": str(IN_FLIGHT_RETRY_AFTER_S)},
        limit=cap,
    )


async def _spec_for(body: CreateMeme, templates: TemplateStore, tenant: str) -> RenderSpec:
    """Only 'captions' need the template now (its layout); otherwise the consumer checks
    that the template exists, off the request path."""
    if body.captions is None:
        return body.render_spec()
    return spec_on(body, await templates.find(body.template_id, tenant))


def spec_on(body: MemeBody, template: TemplateInfo | None, where: str = "") -> RenderSpec:
    """The spec of a body whose 'captions' fill ``template``'s layout (``where`` names the
    item of a batch in the problem)."""
    if template is None:
        raise Problem(404, "template-not-found", "No such template", f"{where}{body.template_id!r}")
    captions = body.captions or []
    if len(captions) > len(template.boxes):
        raise Problem(
            422,
            "too-many-captions",
            "More captions than the template has boxes",
            f"{where}{len(captions)} captions, {len(template.boxes)} boxes",
        )
    return body.render_spec(template.boxes)


@router.get("/{meme_id}", response_model=MemeView, responses=problem_responses(404))
async def get_meme(
    meme_id: MemeIdPath,
    caller: MemesRead,
    request: Request,
    services: ServicesDep,
    wait: Annotated[
        float,
        Query(ge=0, le=MAX_WAIT_S, description="long-poll: seconds to wait for a state change"),
    ] = 0,
) -> MemeView:
    found = await (
        current(services.watcher, services.store, meme_id)
        if wait > 0
        else services.store.get(meme_id)
    )
    item = _visible(found, meme_id, caller)
    if wait > 0:
        changed = await long_poll(
            services.watcher,
            services.store,
            item,
            min(wait, services.settings.max_long_poll_s),
            request.receive,
        )
        item = _visible(changed, meme_id, caller)
    return MemeView.of(item)


@router.get(
    "/{meme_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "state changes"},
        **problem_responses(404),
    },
)
async def stream_meme(
    meme_id: MemeIdPath,
    caller: MemesRead,
    request: Request,
    services: ServicesDep,
    stream_for: Annotated[
        float, Query(alias="timeout", gt=0, le=600, description="give up after seconds")
    ] = 120,
) -> StreamingResponse:
    """Server-sent events: one ``state`` event per state the item enters, ending after
    DONE or FAILED (or ``timeout`` s); a comment line every 15 s keeps proxies open."""
    first = _visible(await current(services.watcher, services.store, meme_id), meme_id, caller)
    return StreamingResponse(
        event_stream(services.watcher, services.store, first, stream_for, request.receive),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store"},
    )


_REDIRECT: dict[str, Any] = {
    "status_code": status.HTTP_307_TEMPORARY_REDIRECT,
    "response_class": RedirectResponse,
    "responses": PRESIGNED_RESPONSES | problem_responses(404, 409),
}


@router.get("/{meme_id}/image", **_REDIRECT)
async def get_meme_image(
    meme_id: MemeIdPath,
    caller: MemesRead,
    services: ServicesDep,
    redirect: RedirectQuery = True,
) -> Response:
    item = await _owned(services.store, meme_id, caller)
    return await _answer_output(
        item, services.outputs, services.settings, thumbnail=False, redirect=redirect
    )


@router.get("/{meme_id}/thumbnail", **_REDIRECT)
async def get_meme_thumbnail(
    meme_id: MemeIdPath,
    caller: MemesRead,
    services: ServicesDep,
    redirect: RedirectQuery = True,
) -> Response:
    item = await _owned(services.store, meme_id, caller)
    return await _answer_output(
        item, services.outputs, services.settings, thumbnail=True, redirect=redirect
    )


async def _answer_output(
    item: MemeItem, outputs: OutputStore, settings: Settings, *, thumbnail: bool, redirect: bool
) -> Response:
    if item.state is not MemeState.DONE or item.result is None:
        raise Problem(
            409,
            "meme-not-ready",
            "Meme image not available",
            f"meme is {item.state.value}",
            state=item.state.value,
        )
    key = item.result.key
    if thumbnail:
        if item.result.thumbnail_key is None:
            raise Problem(404, "no-thumbnail", "No thumbnail", "ask for one with thumbnail_side")
        key = item.result.thumbnail_key
    url = await outputs.presigned_url(key, settings.presign_ttl_s)
    return presigned_answer(url, settings.presign_ttl_s, redirect=redirect)


@router.delete(
    "/{meme_id}", status_code=status.HTTP_204_NO_CONTENT, responses=problem_responses(404, 409)
)
async def delete_meme(
    meme_id: MemeIdPath,
    caller: MemesWrite,
    services: ServicesDep,
) -> Response:
    """Delete a meme and its outputs. Outputs go first: if that fails, the meme is still
    there to delete again. A render still in flight may write its output afterwards; the
    retention lifecycle rule removes that orphan."""
    item = await _owned(services.store, meme_id, caller)
    _refuse_live_batch_meme(item)
    await services.outputs.delete_all(item)
    for _ in range(DELETE_TRIES):
        try:
            await services.store.delete(item)
            break
        except ItemMoved:  # it moved on (e.g. to DONE) since we read it: read it again
            found = await services.store.get(meme_id)
            if found is None:
                break
            item = found
            _refuse_live_batch_meme(item)
    else:
        raise Problem(409, "meme-busy", "The meme kept changing; try again", meme_id)
    services.watcher.forget(meme_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _refuse_live_batch_meme(item: MemeItem) -> None:
    """A batch's meme goes only once it has ended: deleted while live, it would never
    count on its batch, and the batch would never end."""
    if item.batch_id is not None and not item.state.terminal:
        raise Problem(
            409,
            "meme-in-running-batch",
            "The meme's batch is still running",
            "delete it once it is DONE or FAILED",
            batch_id=item.batch_id,
        )

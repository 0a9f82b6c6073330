from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Response, UploadFile, status
from fastapi.responses import RedirectResponse
from memeforge_common.animation import AnimationLimits
from memeforge_common.egress import EgressPolicy
from memeforge_common.limits import (
    MAX_LAYOUT_FORM_CHARS,
    MAX_SOURCE_URL_CHARS,
    MAX_TEMPLATE_NAME_CHARS,
)
from memeforge_common.models import (
    TEMPLATE_ID_PATTERN,
    TextBox,
    is_template_id,
    slugify,
)
from memeforge_common.settings import Settings
from memeforge_common.templates import (
    InvalidCursor,
    LayoutTooLarge,
    MetadataTooLarge,
    TemplateExists,
    TemplateInfo,
    TemplateStore,
    encode_layout,
)
from pydantic import TypeAdapter, ValidationError

from memeforge_api.auth import TemplatesRead, TemplatesWrite
from memeforge_api.deps import ServicesDep
from memeforge_api.images import ImageFacts, InvalidImage, check_upload
from memeforge_api.presign import PRESIGNED_RESPONSES, RedirectQuery, presigned_answer
from memeforge_api.problems import AUTHENTICATED, Problem, problem_responses
from memeforge_api.schemas import Layout, TemplatePage, TemplateView
from memeforge_api.sources import fetch_source

router = APIRouter(
    prefix="/templates", tags=["templates"], responses=problem_responses(*AUTHENTICATED, 422)
)


def _not_found(template_id: str) -> Problem:
    return Problem(404, "template-not-found", "No such template", f"template {template_id!r}")


def template_exists(template_id: str) -> Problem:
    return Problem(409, "template-exists", "Template id already taken", f"template {template_id!r}")


@router.get("", response_model=TemplatePage, responses=problem_responses(400))
async def get_templates(
    caller: TemplatesRead,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
) -> TemplatePage:
    """The caller's own templates, then the public ones (the seeds)."""
    try:
        infos, next_cursor = await services.templates.page(
            caller.tenant, limit=limit, cursor=cursor
        )
    except InvalidCursor as err:
        raise Problem(
            400, "invalid-cursor", "Invalid cursor", "pass back a next_cursor unchanged"
        ) from err
    return TemplatePage(items=[TemplateView.of(i) for i in infos], next_cursor=next_cursor)


@router.get("/{template_id}", response_model=TemplateView, responses=problem_responses(404))
async def get_template(
    template_id: str, caller: TemplatesRead, services: ServicesDep
) -> TemplateView:
    info = (
        await services.templates.find(template_id, caller.tenant)
        if is_template_id(template_id)
        else None
    )
    if info is None:
        raise _not_found(template_id)
    return TemplateView.of(info)


@router.get(
    "/{template_id}/image",
    status_code=status.HTTP_307_TEMPORARY_REDIRECT,
    response_class=RedirectResponse,
    responses=PRESIGNED_RESPONSES | problem_responses(404),
)
async def get_template_image(
    template_id: str,
    caller: TemplatesRead,
    services: ServicesDep,
    redirect: RedirectQuery = True,
) -> Response:
    """The blank template image, for galleries and editors."""
    info = (
        await services.templates.find(template_id, caller.tenant)
        if is_template_id(template_id)
        else None
    )
    if info is None:
        raise _not_found(template_id)
    url = await services.templates.presigned_url(info.key, services.settings.presign_ttl_s)
    return presigned_answer(url, services.settings.presign_ttl_s, redirect=redirect)


@router.delete(
    "/{template_id}", status_code=status.HTTP_204_NO_CONTENT, responses=problem_responses(404)
)
async def delete_template(
    template_id: str, caller: TemplatesWrite, services: ServicesDep
) -> Response:
    """Delete one of the caller's own templates (another tenant's, or a public one, is
    not the caller's to delete: 404). Memes already made from it keep their outputs."""
    if not is_template_id(template_id) or not await services.templates.delete(
        template_id, caller.tenant
    ):
        raise _not_found(template_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=TemplateView,
    responses=problem_responses(400, 409, 413, 415),
)
async def upload_template(
    response: Response,
    caller: TemplatesWrite,
    services: ServicesDep,
    name: Annotated[str, Form(min_length=1, max_length=MAX_TEMPLATE_NAME_CHARS)],
    file: Annotated[UploadFile | None, File(description="JPEG, PNG, WebP or GIF")] = None,
    source_url: Annotated[
        str | None,
        Form(
            max_length=MAX_SOURCE_URL_CHARS,
            description="instead of file: an http(s) URL to fetch the image from",
        ),
    ] = None,
    template_id: Annotated[
        str | None, Form(alias="id", pattern=TEMPLATE_ID_PATTERN, description="default: from name")
    ] = None,
    boxes: Annotated[
        str | None,
        Form(
            max_length=MAX_LAYOUT_FORM_CHARS,
            description="JSON list of default text boxes (x, y, width, height, style; no text)",
        ),
    ] = None,
) -> TemplateView:
    """A new template from an uploaded ``file`` or fetched from ``source_url`` (one of
    them); either way the format is sniffed from the bytes and the pixels checked."""
    if (file is None) == (source_url is None):
        raise Problem(422, "invalid-template-source", "Give either 'file' or 'source_url'")
    layout = parse_layout(boxes) if boxes is not None else None
    tid = template_id_for(name, template_id)
    if (
        await services.templates.head(tid, caller.tenant) is not None
    ):  # early answer; upload() decides
        raise template_exists(tid)
    if file is not None:
        data = await file.read(services.settings.max_upload_bytes + 1)
        if len(data) > services.settings.max_upload_bytes:
            raise upload_too_large(services.settings.max_upload_bytes)
    else:
        policy = EgressPolicy.from_settings(services.settings)
        data = await fetch_source(
            source_url or "", policy=policy, max_bytes=services.settings.max_upload_bytes
        )
    facts = await checked_image(data, services.settings)
    info = await register_template(
        services.templates,
        tid,
        tenant=caller.tenant,
        name=name,
        data=data,
        facts=facts,
        layout=layout,
    )
    response.headers["Location"] = f"/templates/{tid}"
    return TemplateView.of(info)


def template_id_for(name: str, template_id: str | None) -> str:
    tid = template_id or slugify(name)
    if not is_template_id(tid):
        raise Problem(422, "invalid-template-id", "Cannot derive an id from the name; give 'id'")
    return tid


def upload_too_large(limit: int) -> Problem:
    return Problem(413, "upload-too-large", "Upload too large", f"limit {limit} bytes")


async def checked_image(data: bytes, settings: Settings) -> ImageFacts:
    """The image's facts, or a Problem: 415 for a format not accepted, else 422."""
    try:
        return await check_upload(
            data,
            max_pixels=settings.max_source_pixels,
            caps=AnimationLimits.from_settings(settings),
        )
    except InvalidImage as err:
        status_code = 415 if err.code == "unsupported-image-format" else 422
        raise Problem(status_code, err.code, "Invalid image", err.detail) from err


async def register_template(
    templates: TemplateStore,
    tid: str,
    *,
    tenant: str,
    name: str,
    data: bytes,
    facts: ImageFacts,
    layout: tuple[TextBox, ...] | None,
) -> TemplateInfo:
    """Store checked bytes as the tenant's template ``tid``: 409 when the id is taken."""
    try:
        await templates.upload(
            tid,
            tenant=tenant,
            name=name,
            data=data,
            content_type=facts.content_type,
            width=facts.width,
            height=facts.height,
            layout=layout,
            animation=facts.animation,
        )
    except TemplateExists as err:
        raise template_exists(tid) from err
    except MetadataTooLarge as err:
        title = "Template name and layout too large"
        raise Problem(422, "metadata-too-large", title, str(err)) from err
    info = await templates.head(tid, tenant)
    if info is None:  # deleted in between: vanishingly rare, but never a 500
        raise _not_found(tid)
    return info


def parse_layout(raw: str) -> tuple[TextBox, ...]:
    """A template's default boxes from the upload form: validated, bounded, text-free."""
    try:
        boxes = _LAYOUT.validate_json(raw)
    except ValidationError as err:
        errors = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in err.errors()]
        raise Problem(422, "invalid-layout", "Invalid template layout", errors=errors) from err
    return bounded_layout(boxes)


def bounded_layout(boxes: tuple[TextBox, ...]) -> tuple[TextBox, ...]:
    """``boxes`` if they fit the storage's bound, checked before any upload."""
    try:
        encode_layout(boxes)
    except LayoutTooLarge as err:
        raise Problem(422, "layout-too-large", "Template layout too large", str(err)) from err
    return boxes


_LAYOUT = TypeAdapter(Layout)

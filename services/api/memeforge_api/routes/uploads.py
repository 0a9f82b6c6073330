"""Direct uploads to S3: a presigned POST form, then ``complete`` checks and registers it.

The bytes never pass through the api on the way in; S3 enforces the form's policy. On
``complete`` the api reads the object once (bounded by the upload limit), checks it like
any upload (format sniffed from the bytes, pixel cap), stores it as a template, and
deletes the incoming object; an object that fails the check is deleted too.
"""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from memeforge_common.models import is_upload_id, new_upload_id
from memeforge_common.uploads import UploadMissing, UploadTooLarge

from memeforge_api.auth import TemplatesWrite
from memeforge_api.deps import ServicesDep
from memeforge_api.problems import AUTHENTICATED, Problem, problem_responses
from memeforge_api.routes.templates import (
    bounded_layout,
    checked_image,
    register_template,
    template_exists,
    template_id_for,
    upload_too_large,
)
from memeforge_api.schemas import CompleteUpload, DirectUpload, TemplateView

router = APIRouter(
    prefix="/templates/uploads",
    tags=["templates"],
    responses=problem_responses(*AUTHENTICATED, 422),
)


def _not_found(upload_id: str) -> Problem:
    return Problem(404, "upload-not-found", "No such upload", f"upload {upload_id!r}")


@router.post("", status_code=status.HTTP_201_CREATED, response_model=DirectUpload)
async def start_upload(
    caller: TemplatesWrite,
    services: ServicesDep,
) -> DirectUpload:
    """A presigned POST form for one image of 1 byte to the upload limit, with a
    Content-Type of image/*, valid for MEMEFORGE_UPLOAD_POLICY_TTL_S."""
    upload_id = new_upload_id()
    form = await services.uploads.form(
        upload_id,
        tenant=caller.tenant,
        max_bytes=services.settings.max_upload_bytes,
        ttl_s=services.settings.upload_policy_ttl_s,
    )
    return DirectUpload(
        id=upload_id,
        url=form.url,
        fields=form.fields,
        expires_at=form.expires_at,
        max_bytes=services.settings.max_upload_bytes,
        links={"complete": f"/templates/uploads/{upload_id}/complete"},
    )


@router.post(
    "/{upload_id}/complete",
    status_code=status.HTTP_201_CREATED,
    response_model=TemplateView,
    responses=problem_responses(400, 404, 409, 413, 415),
)
async def complete_upload(
    upload_id: str,
    body: CompleteUpload,
    response: Response,
    caller: TemplatesWrite,
    services: ServicesDep,
) -> TemplateView:
    """Register the uploaded image as the caller's template, or delete it and say why."""
    if not is_upload_id(upload_id):
        raise _not_found(upload_id)
    layout = bounded_layout(body.boxes) if body.boxes is not None else None
    tid = template_id_for(body.name, body.template_id)
    if (
        await services.templates.head(tid, caller.tenant) is not None
    ):  # early answer; upload() decides
        raise template_exists(tid)
    try:
        data = await services.uploads.read(
            upload_id, tenant=caller.tenant, max_bytes=services.settings.max_upload_bytes
        )
    except UploadMissing as err:
        raise _not_found(upload_id) from err
    except UploadTooLarge as err:
        await services.uploads.delete(upload_id, tenant=caller.tenant)
        raise upload_too_large(services.settings.max_upload_bytes) from err
    try:
        facts = await checked_image(data, services.settings)
    except Problem:
        await services.uploads.delete(upload_id, tenant=caller.tenant)
        raise
    info = await register_template(
        services.templates,
        tid,
        tenant=caller.tenant,
        name=body.name,
        data=data,
        facts=facts,
        layout=layout,
    )
    await services.uploads.delete(upload_id, tenant=caller.tenant)
    response.headers["Location"] = f"/templates/{tid}"
    return TemplateView.of(info)

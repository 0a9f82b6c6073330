"""Direct uploads: POST /templates/uploads, the form sent to the emulator's S3 over HTTP,
then /complete; the api in-process against the emulator."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError
from memeforge_api.app import create_app
from memeforge_common.apikeys import ALL_SCOPES, KeyStore, Scope
from memeforge_common.aws import AwsClients
from memeforge_common.models import INCOMING_PREFIX, incoming_key
from memeforge_common.settings import Settings

from tests.support.images import gradient
from tests.support.settings import on_resources
from tests.support.uploads import post_form, signed_policy

pytestmark = pytest.mark.integration

UPLOAD_LIMIT = 200_000


@pytest.fixture
def settings(resources: Settings) -> Settings:
    return on_resources(resources, max_upload_bytes=UPLOAD_LIMIT)


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            yield http


async def _auth(aws: AwsClients, settings: Settings, tenant: str, *scopes: Scope) -> dict[str, str]:
    key = await KeyStore(aws.dynamodb, settings.table).create(
        tenant, "uploads", frozenset(scopes) or ALL_SCOPES
    )
    return {"Authorization": f"Bearer {key.token}"}


async def _start(api: httpx.AsyncClient, auth: dict[str, str]) -> dict[str, Any]:
    started = await api.post("/templates/uploads", headers=auth)
    assert started.status_code == 201, started.text
    upload: dict[str, Any] = started.json()
    return upload


async def _exists(aws: AwsClients, settings: Settings, key: str) -> bool:
    try:
        await aws.s3.head_object(Bucket=settings.bucket, Key=key)
    except ClientError as err:
        if err.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return True


async def test_an_image_uploaded_straight_to_s3_becomes_a_template(
    api: httpx.AsyncClient, aws: AwsClients, settings: Settings
) -> None:
    """README "Direct uploads to S3"."""
    auth = await _auth(aws, settings, "acme")
    upload = await _start(api, auth)
    key = incoming_key(upload["id"], "acme")
    assert upload["fields"]["key"] == key
    assert upload["max_bytes"] == UPLOAD_LIMIT
    conditions = signed_policy(upload)["conditions"]
    assert ["content-length-range", 1, UPLOAD_LIMIT] in conditions
    assert ["starts-with", "$Content-Type", "image/"] in conditions
    assert {"key": key} in conditions

    image = gradient(120, 80, "PNG")
    sent = await post_form(upload, image)
    assert sent.status_code in (200, 201, 204), sent.text
    done = await api.post(upload["links"]["complete"], json={"name": "Direct one"}, headers=auth)
    assert done.status_code == 201, done.text
    assert done.headers["location"] == "/templates/direct-one"
    view = done.json()
    assert (view["content_type"], view["width"], view["height"]) == ("image/png", 120, 80)
    stored = await aws.s3.get_object(Bucket=settings.bucket, Key="templates/acme/direct-one")
    assert await stored["Body"].read() == image
    assert not await _exists(aws, settings, key)  # the incoming object is gone
    again = await api.post(upload["links"]["complete"], json={"name": "Twice"}, headers=auth)
    assert (again.status_code, again.json()["code"]) == (404, "upload-not-found")


async def test_an_undecodable_upload_is_deleted_and_answered_422(
    api: httpx.AsyncClient, aws: AwsClients, settings: Settings
) -> None:
    """README "Direct uploads to S3": "An object that fails is deleted and answered 422"."""
    auth = await _auth(aws, settings, "acme")
    upload = await _start(api, auth)
    truncated = gradient(64, 64, "PNG")[:-40]
    assert (await post_form(upload, truncated)).status_code in (200, 201, 204)
    refused = await api.post(upload["links"]["complete"], json={"name": "Broken"}, headers=auth)
    assert refused.headers["content-type"] == "application/problem+json"
    assert (refused.status_code, refused.json()["code"]) == (422, "invalid-image")
    assert not await _exists(aws, settings, incoming_key(upload["id"], "acme"))
    assert (await api.get("/templates/broken", headers=auth)).status_code == 404


async def test_an_object_over_the_limit_is_deleted_unread_and_answered_413(
    api: httpx.AsyncClient, aws: AwsClients, settings: Settings
) -> None:
    """README "Direct uploads to S3": "never more than the upload limit".
    Whatever lands under the key (S3 that did not enforce the form's range, or an
    identity with its own PutObject), complete never reads more than the limit."""
    auth = await _auth(aws, settings, "acme")
    upload = await _start(api, auth)
    key = incoming_key(upload["id"], "acme")
    await aws.s3.put_object(Bucket=settings.bucket, Key=key, Body=b"\xff" * (UPLOAD_LIMIT + 1))
    refused = await api.post(upload["links"]["complete"], json={"name": "Huge"}, headers=auth)
    assert (refused.status_code, refused.json()["code"]) == (413, "upload-too-large")
    assert not await _exists(aws, settings, key)


async def test_another_tenant_cannot_complete_or_see_an_upload(
    api: httpx.AsyncClient, aws: AwsClients, settings: Settings
) -> None:
    """README "Direct uploads to S3": "another tenant's ... upload is 404 upload-not-found"."""
    acme = await _auth(aws, settings, "acme")
    other = await _auth(aws, settings, "globex")
    upload = await _start(api, acme)
    assert (await post_form(upload, gradient(32, 32, "PNG"))).status_code in (200, 201, 204)
    theirs = await api.post(upload["links"]["complete"], json={"name": "Stolen"}, headers=other)
    assert (theirs.status_code, theirs.json()["code"]) == (404, "upload-not-found")
    mine = await api.post(upload["links"]["complete"], json={"name": "Mine"}, headers=acme)
    assert mine.status_code == 201, mine.text
    assert (await api.get("/templates/mine", headers=other)).status_code == 404


async def test_uploads_need_templates_write_and_a_real_upload_id(
    api: httpx.AsyncClient, aws: AwsClients, settings: Settings
) -> None:
    reader = await _auth(aws, settings, "acme", Scope.TEMPLATES_READ)
    denied = await api.post("/templates/uploads", headers=reader)
    assert (denied.status_code, denied.json()["code"]) == (403, "insufficient-scope")
    writer = await _auth(aws, settings, "acme")
    for upload_id in ("0" * 32, "not-an-id"):
        missing = await api.post(
            f"/templates/uploads/{upload_id}/complete", json={"name": "None"}, headers=writer
        )
        assert (missing.status_code, missing.json()["code"]) == (404, "upload-not-found")


async def test_abandoned_uploads_expire_by_a_lifecycle_rule(
    aws: AwsClients, settings: Settings
) -> None:
    rules = (await aws.s3.get_bucket_lifecycle_configuration(Bucket=settings.bucket))["Rules"]
    incoming = [r for r in rules if r.get("Filter", {}).get("Prefix") == INCOMING_PREFIX]
    assert [r["Expiration"]["Days"] for r in incoming] == [1]

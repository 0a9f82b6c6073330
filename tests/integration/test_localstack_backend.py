"""The "localstack" emulator backend for real: LocalStack (S3, SQS) + DynamoDB Local processes.

Independent of MEMEFORGE_BACKEND: starts its own backend. Skipped only where
scripts/setup-localstack.sh has not been run (its outputs are absent), and failed instead
when MEMEFORGE_REQUIRE_BACKENDS names localstack (as CI does).
"""

from __future__ import annotations

import asyncio
import re
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import aioboto3
import httpx
import pytest
from aiobotocore.config import AioConfig
from botocore.exceptions import ClientError
from memeforge_api.app import create_app
from memeforge_common.apikeys import ALL_SCOPES, KeyStore
from memeforge_common.aws import AwsClients
from memeforge_common.bootstrap import bootstrap
from memeforge_common.settings import Settings

from devenv.run.backends.localstack import find_install, start_localstack
from devenv.run.emulator import Emulator
from tests.support.backends import unavailable
from tests.support.images import gradient
from tests.support.memes import put_done_meme
from tests.support.settings import unique_settings
from tests.support.uploads import post_form, signed_policy, with_policy

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_sqs import SQSClient

pytestmark = pytest.mark.integration


def _require_install() -> None:
    try:
        find_install()
    except RuntimeError as err:
        unavailable("localstack", str(err))


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    _require_install()
    emu = start_localstack(tmp_path_factory.mktemp("localstack-backend"))
    try:
        yield emu
    finally:
        emu.stop()


def _session(emu: Emulator) -> aioboto3.Session:
    env = emu.child_env()  # the credentials every service child process gets
    return aioboto3.Session(
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_REGION"],
    )


@pytest.fixture
async def s3(backend: Emulator) -> AsyncIterator[S3Client]:
    # As the services configure it for an emulator: SigV4, path-style bucket addressing.
    config = AioConfig(signature_version="s3v4", s3={"addressing_style": "path"})
    async with _session(backend).client(
        "s3", endpoint_url=backend.env["AWS_ENDPOINT_URL"], config=config
    ) as client:
        yield client


@pytest.fixture
async def sqs(backend: Emulator) -> AsyncIterator[SQSClient]:
    async with _session(backend).client(
        "sqs", endpoint_url=backend.env["AWS_ENDPOINT_URL"]
    ) as client:
        yield client


@pytest.fixture
async def dynamodb(backend: Emulator) -> AsyncIterator[DynamoDBClient]:
    async with _session(backend).client(
        "dynamodb", endpoint_url=backend.env["AWS_ENDPOINT_URL_DYNAMODB"]
    ) as client:
        yield client


def _name() -> str:
    return f"mf-ls-{uuid.uuid4().hex[:10]}"


async def _bucket_with_object(s3: S3Client, body: bytes) -> tuple[str, str]:
    bucket, key = _name(), "memes/a b.txt"  # a key that needs URL-encoding
    await s3.create_bucket(Bucket=bucket)
    await s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="text/plain")
    return bucket, key


async def test_s3_put_and_get(s3: S3Client) -> None:
    bucket, key = await _bucket_with_object(s3, b"hello s3")
    got = await s3.get_object(Bucket=bucket, Key=key)
    assert await got["Body"].read() == b"hello s3"
    assert got["ContentType"] == "text/plain"


@asynccontextmanager
async def _api(settings: Settings, auth: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://api", headers=auth
        ) as api:
            yield api


async def _redirect(settings: Settings, meme_id: str, auth: dict[str, str]) -> str:
    """Where the api's GET /memes/{id}/image sends a client."""
    async with _api(settings, auth) as api:
        response = await api.get(f"/memes/{meme_id}/image")
    assert response.status_code == 307, response.text
    return str(response.headers["location"])


async def test_the_apis_download_redirect_is_a_checked_expiring_url(
    backend: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README: "Download it (a redirect to a presigned, expiring S3 URL ...)" and, on
    LocalStack, "presigned URLs are really verified (tampered or expired → 403)"."""
    for name, value in backend.child_env().items():
        if name.startswith("AWS_"):
            monkeypatch.setenv(name, value)
    settings = unique_settings()
    await bootstrap(settings, seed=False)
    async with AwsClients.open(settings) as aws:
        meme_id = await put_done_meme(aws, settings, b"rendered meme bytes", tenant="acme")
        key = await KeyStore(aws.dynamodb, settings.table).create("acme", "redirect", ALL_SCOPES)
    auth = {"Authorization": f"Bearer {key.token}"}
    url = await _redirect(settings, meme_id, auth)
    signature = re.search(r"X-Amz-Signature=([0-9a-f]{64})", url)
    assert signature is not None, url
    flipped = ("0" if signature[1][0] != "0" else "1") + signature[1][1:]
    short = await _redirect(settings.model_copy(update={"presign_ttl_s": 1}), meme_id, auth)

    async with httpx.AsyncClient() as http:
        ok = await http.get(url)
        assert ok.status_code == 200
        assert ok.content == b"rendered meme bytes"

        refused = await http.get(url.replace(signature[1], flipped))
        assert refused.status_code == 403
        assert b"SignatureDoesNotMatch" in refused.content

        # (An unsigned GET is not checked: LocalStack serves it, it enforces no ACLs.)
        await asyncio.sleep(2.1)  # let the 1 s URL expire: expiry is checked to the second
        expired = await http.get(short)
        assert expired.status_code == 403
        assert b"expired" in expired.content


async def test_sqs_send_and_receive(backend: Emulator, sqs: SQSClient) -> None:
    created = await sqs.create_queue(QueueName=_name())
    queue_url = (await sqs.get_queue_url(QueueName=created["QueueUrl"].rsplit("/", 1)[1]))[
        "QueueUrl"
    ]
    # The queue URL must point back at the emulator (not at a DNS name that needs the internet).
    assert urlsplit(queue_url).netloc == urlsplit(backend.env["AWS_ENDPOINT_URL"]).netloc

    await sqs.send_message(QueueUrl=queue_url, MessageBody="render me")
    received = await sqs.receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=1, WaitTimeSeconds=2
    )
    messages = received.get("Messages", [])
    assert [m.get("Body") for m in messages] == ["render me"]
    await sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=messages[0]["ReceiptHandle"])


async def test_dynamodb_conditional_put(dynamodb: DynamoDBClient) -> None:
    table = _name()
    await dynamodb.create_table(
        TableName=table,
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    await dynamodb.get_waiter("table_exists").wait(
        TableName=table, WaiterConfig={"Delay": 1, "MaxAttempts": 10}
    )

    async def create_once() -> None:
        await dynamodb.put_item(
            TableName=table,
            Item={"pk": {"S": "meme-1"}, "state": {"S": "PENDING"}},
            ConditionExpression="attribute_not_exists(pk)",
        )

    await create_once()
    with pytest.raises(ClientError) as failed:
        await create_once()
    assert failed.value.response["Error"]["Code"] == "ConditionalCheckFailedException"


def _port_open(url: str) -> bool:
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((parts.hostname, parts.port)) == 0


def test_localstack_serves_with_its_start_up_heap_frozen(backend: Emulator) -> None:
    """docs/localstack.md "Garbage collection": by default the launcher returns only once
    LocalStack's interpreter has frozen its start-up heap (LocalStack's, not an empty
    interpreter's: well over 100,000 objects)."""
    tuning = backend.tuning["localstack_gc"]
    found = re.fullmatch(r"freeze \(([\d,]+) start-up objects frozen once ready\)", tuning)
    assert found is not None, tuning
    assert int(found.group(1).replace(",", "")) > 100_000


def test_stop_ends_both_processes(tmp_path: Path) -> None:
    """docs/localstack.md "stop (SIGTERM to both process groups)"."""
    _require_install()
    emu = start_localstack(tmp_path)
    urls = [emu.env["AWS_ENDPOINT_URL"], emu.env["AWS_ENDPOINT_URL_DYNAMODB"]]
    assert len(emu.processes) == 2
    assert all(proc.poll() is None for proc in emu.processes)
    assert all(_port_open(url) for url in urls)
    assert (tmp_path / "localstack.log").is_file()
    assert (tmp_path / "dynamodb-local.log").is_file()

    emu.stop()

    assert all(proc.poll() is not None for proc in emu.processes)
    assert not any(_port_open(url) for url in urls)


async def test_s3_itself_enforces_the_direct_upload_form(
    backend: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README "Direct uploads to S3": on LocalStack, S3 itself refuses a tampered policy,
    a body over the range, a form field the policy does not allow (another key, a
    Content-Type that is not image/*) and an expired form. LocalStack does not verify the
    signature of a policy that still decodes (real S3 does): a policy re-encoded with a
    wider range is caught by complete instead (413, object deleted)."""
    for name, value in backend.child_env().items():
        if name.startswith("AWS_"):
            monkeypatch.setenv(name, value)
    settings = unique_settings(max_upload_bytes=50_000)
    await bootstrap(settings, seed=False)
    async with AwsClients.open(settings) as aws:
        key = await KeyStore(aws.dynamodb, settings.table).create("acme", "direct", ALL_SCOPES)
    auth = {"Authorization": f"Bearer {key.token}"}
    image = gradient(40, 30, "PNG")
    async with _api(settings, auth) as api:
        form = (await api.post("/templates/uploads")).json()
        fields = form["fields"]

        garbled = form | {"fields": fields | {"policy": "x" + fields["policy"][1:]}}
        tampered = await post_form(garbled, image)
        assert tampered.status_code == 403, tampered.text
        assert b"SignatureDoesNotMatch" in tampered.content
        oversized = await post_form(form, b"\0" * 60_000)
        assert oversized.status_code == 400, oversized.text
        assert b"EntityTooLarge" in oversized.content
        html = await post_form(form, image, content_type="text/html")
        assert html.status_code == 403, html.text
        elsewhere = form | {"fields": fields | {"key": "templates/acme/planted"}}
        assert (await post_form(elsewhere, image)).status_code == 403

        async with AwsClients.open(settings) as aws:
            listed = await aws.s3.list_objects_v2(Bucket=settings.bucket, Prefix="")
        assert listed.get("KeyCount", 0) == 0, listed.get("Contents")

        policy = signed_policy(form)
        policy["conditions"] = [
            ["content-length-range", 1, 10**9]
            if isinstance(c, list) and c[0] == "content-length-range"
            else c
            for c in policy["conditions"]
        ]
        widened = await post_form(with_policy(form, policy), b"\0" * 60_000)
        complete = form["links"]["complete"]
        if widened.status_code < 300:  # LocalStack: stored, so complete must refuse it
            late = await api.post(complete, json={"name": "Widened"})
            assert (late.status_code, late.json()["code"]) == (413, "upload-too-large")
            async with AwsClients.open(settings) as aws:
                gone = await aws.s3.list_objects_v2(Bucket=settings.bucket, Prefix="incoming/")
            assert gone.get("KeyCount", 0) == 0
        else:  # real S3: the signature no longer matches
            assert widened.status_code == 403, widened.text

        assert (await post_form(form, image)).status_code in (200, 201, 204)
        done = await api.post(complete, json={"name": "Direct"})
        assert done.status_code == 201, done.text

    async with _api(settings.model_copy(update={"upload_policy_ttl_s": 1}), auth) as api:
        expiring = (await api.post("/templates/uploads")).json()
    await asyncio.sleep(2.1)  # let the 1 s form expire: expiry is checked to the second
    expired = await post_form(expiring, image)
    assert expired.status_code == 403, expired.text
    assert b"expired" in expired.content

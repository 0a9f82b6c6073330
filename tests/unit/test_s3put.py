"""The lean S3 PutObject (memeforge_common.s3put, leanclients.LeanS3) sends the request
aiobotocore sends for our uploads, signature included, on an emulator (path style, over
http: the body's SHA-256 signed, CRC32 in a header) and on AWS (virtual-hosted, over
https: an aws-chunked body with the CRC32 as its trailer); it answers and raises as
aiobotocore does and counts every attempt.

The emulator shapes go over HTTP on loopback to an in-process server that records each
request; the AWS ones are compared before sending (aiobotocore's as its ``before-send``
event sees it: there is no TLS server here). The emulators are integration's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aioboto3
import pytest
from aiobotocore.config import AioConfig
from aiohttp import web
from botocore import auth as botocore_auth
from botocore.exceptions import ClientError, ParamValidationError
from memeforge_common import botocompat, callpath, signing
from memeforge_common.aws import AwsClients, Timeouts, client_config, session_credentials
from memeforge_common.leancalls import LeanTransport
from memeforge_common.leanclients import LeanS3, lean_s3
from memeforge_common.settings import Settings
from prometheus_client import REGISTRY

from tests.support.httpstub import serving

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 2, 0, 30, 15, tzinfo=UTC)
Answer = tuple[int, dict[str, str], bytes]
OK: Answer = (
    200,
    {
        "ETag": '"5d41402abc4b2a76b9719d911017c592"',
        "x-amz-checksum-crc32": "NhCmhg==",
        "x-amz-checksum-type": "FULL_OBJECT",
        "x-amz-request-id": "req-1",
        "x-amz-id-2": "host-1",
    },
    b"",
)


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Stub:
    """Records every request; answers each from ``script`` (then ``OK``)."""

    url: str
    script: list[Answer] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.seen.append(Seen(request.method, request.raw_path, dict(request.headers), body))
        status, headers, answer = self.script.pop(0) if self.script else OK
        return web.Response(status=status, headers=headers, body=answer)


@pytest.fixture
async def stub() -> AsyncIterator[Stub]:
    server = Stub("")
    async with serving(server.handle) as url:
        server.url = url
        yield server


class FrozenClock(datetime):
    @classmethod
    def now(cls, tz: Any = None) -> FrozenClock:
        return cls.fromtimestamp(NOW.timestamp(), tz)


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both signers sign at NOW, so their signatures can be compared."""
    monkeypatch.setattr(botocore_auth, "get_current_datetime", lambda: NOW.replace(tzinfo=None))
    monkeypatch.setattr(signing, "datetime", FrozenClock)


async def no_refresh(**_: Any) -> float | None:
    return None


@asynccontextmanager
async def clients(
    url: str | None, *, retries: int = 0, token: str | None = None
) -> AsyncIterator[tuple[Any, LeanS3]]:
    """An aiobotocore S3 client set up as AwsClients.open sets one up (path style on an
    endpoint URL, virtual-hosted on AWS) and the lean one over it."""
    session = aioboto3.Session(
        region_name="eu-west-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="s",
        aws_session_token=token,
    )
    style = "path" if url else "virtual"
    config = client_config(
        s3=True, timeouts=Timeouts(connect_s=1, read_s=5, max_attempts=retries)
    ).merge(AioConfig(s3={"addressing_style": style}))
    async with session.client("s3", endpoint_url=url, config=config) as client:  # type: ignore[call-overload]
        signing.install(client)
        callpath.trim(client)
        http = await botocompat.aiohttp_session(client)
        assert http is not None
        transport = LeanTransport(
            client=client,
            http=http,
            credentials=await session_credentials(session),
            user_agent=botocompat.user_agent(client),
            refresh=no_refresh,
            operations=(),
        )
        yield client, LeanS3(client, transport)


# Our uploads: a meme's image, a batch request, a template (metadata, create-only).
UPLOADS: dict[str, dict[str, Any]] = {
    "output": {
        "Bucket": "memes",
        "Key": "t/ab/abcdef.png",
        "Body": b"\x89PNG" + bytes(range(256)) * 40,
        "ContentType": "image/png",
    },
    "batch request": {
        "Bucket": "memes",
        "Key": "batches/b 1/request.json",
        "Body": b'{"items": []}',
        "ContentType": "application/json",
    },
    "template": {
        "Bucket": "memes.templates",
        "Key": "templates/t/drake~1.gif",
        "Body": b"GIF89a" + b"\x00" * 3000,
        "ContentType": "image/gif",
        "Metadata": {"name": "drake", "width": "640", "layout": '[{"x":1}]'},
        "IfNoneMatch": "*",
        "CacheControl": "max-age=60",
    },
    "empty": {"Bucket": "memes", "Key": "empty", "Body": b""},
}
VARYING = {"amz-sdk-invocation-id"}  # per call; with the clock frozen, all else is fixed


def _fixed(headers: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in headers.items() if name not in VARYING}


@pytest.mark.parametrize("shape", sorted(UPLOADS))
async def test_an_emulator_upload_is_aiobotocores(stub: Stub, frozen: None, shape: str) -> None:
    params = UPLOADS[shape]
    async with clients(stub.url) as (client, lean):
        assert await lean.lean_request(dict(params)) is not None  # the lean path is taken
        await client.put_object(**params)
        await lean.put_object(**params)
    theirs, ours = stub.seen
    assert (ours.method, ours.path, ours.body) == (theirs.method, theirs.path, theirs.body)
    assert ours.path.startswith(f"/{params['Bucket']}/")  # path style
    assert _fixed(ours.headers) == _fixed(theirs.headers)
    assert "Expect" not in ours.headers
    assert ours.headers["x-amz-sdk-checksum-algorithm"] == "CRC32"


class Captured(Exception):
    """Raised from aiobotocore's before-send to stop the request there."""


async def _aiobotocores_request(
    client: Any, params: dict[str, Any]
) -> tuple[str, dict[str, str], bytes]:
    seen: list[tuple[str, dict[str, str], bytes]] = []

    async def capture(request: Any, **_: Any) -> None:
        body = request.body
        data = body if isinstance(body, bytes) else await body.read()
        headers = {name: value.decode() for name, value in request.headers.items()}
        seen.append((request.url, headers, data))
        raise Captured

    client.meta.events.register_first("before-send.s3", capture)
    with pytest.raises(Captured):
        await client.put_object(**params)
    return seen[0]


@pytest.mark.parametrize("token", [None, "session-token"])
@pytest.mark.parametrize("shape", sorted(UPLOADS))
async def test_an_aws_upload_is_aiobotocores(
    frozen: None, aws_endpoints: None, shape: str, token: str | None
) -> None:
    params = UPLOADS[shape]
    async with clients(None, token=token) as (client, lean):
        url, headers, body = await _aiobotocores_request(client, dict(params))
        request = await lean.lean_request(dict(params))
        assert request is not None
        ours = request.sign(await lean._transport._credentials.get_frozen_credentials())
    bucket = params["Bucket"]
    # Virtual-hosted, but for a bucket with a dot (TLS certificates): botocore's ruleset.
    host = "s3.eu-west-1.amazonaws.com"
    assert url.startswith(
        f"https://{host}/{bucket}/" if "." in bucket else f"https://{bucket}.{host}/"
    )
    assert (request.method, request.url, request.body) == ("PUT", url, body)
    assert request.chunked  # aws-chunked, its trailer the CRC32, as botocore over TLS
    assert headers.pop("Transfer-Encoding") == "chunked"  # aiohttp's, for chunked=True
    assert headers.pop("amz-sdk-request") == "attempt=1"  # the transport's, per attempt
    assert _fixed(ours) == _fixed(headers)
    assert ("X-Amz-Security-Token" in ours) is bool(token)


async def test_an_aws_chunked_body_goes_out_chunked(stub: Stub) -> None:
    """aiohttp frames the aws-chunked body in HTTP chunks, with no Content-Length."""
    body = b"5\r\nhello\r\n0\r\nx-amz-checksum-crc32:NhCmhg==\r\n\r\n"
    async with clients(stub.url) as (_, lean):
        request = await lean.lean_request(dict(UPLOADS["empty"]))
        assert request is not None
        chunked = request._replace(body=body, chunked=True)
        await lean._transport.send(lean._put, chunked)
    (seen,) = stub.seen
    assert seen.headers["Transfer-Encoding"] == "chunked"
    assert "Content-Length" not in seen.headers
    assert seen.body == body


def _without_date(response: dict[str, Any]) -> dict[str, Any]:
    metadata = dict(response["ResponseMetadata"])
    metadata["HTTPHeaders"] = {
        k: v for k, v in metadata["HTTPHeaders"].items() if k not in ("date", "server")
    }
    return response | {"ResponseMetadata": metadata}


def _xml_error(code: str, message: str, **extra: str) -> bytes:
    fields = "".join(f"<{name}>{value}</{name}>" for name, value in extra.items())
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
        f"<Message>{message}</Message>{fields}<RequestId>r</RequestId>"
        f"<HostId>h</HostId></Error>"
    ).encode()


XML = {"Content-Type": "application/xml", "x-amz-request-id": "r"}
ANSWERS: dict[str, Answer] = {
    "ok": OK,
    "ok, versioned": (200, {**OK[1], "x-amz-version-id": "v1"}, b""),
    "no such bucket": (
        404,
        XML,
        _xml_error("NoSuchBucket", "The specified bucket does not exist", BucketName="memes"),
    ),
    "precondition failed": (
        412,
        XML,
        _xml_error("PreconditionFailed", "At least one of the pre-conditions failed"),
    ),
    "access denied": (403, XML, _xml_error("AccessDenied", "Access Denied")),
    "no body": (400, {"x-amz-request-id": "r"}, b""),
}


@pytest.mark.parametrize("answer", sorted(ANSWERS))
async def test_the_answer_is_aiobotocores(stub: Stub, answer: str) -> None:
    """The same parsed response, or the same exception class with the same error_response."""
    outcomes = []
    async with clients(stub.url) as (client, lean):
        for each in (client, lean):
            stub.script.append(ANSWERS[answer])
            try:
                outcomes.append(_without_date(await each.put_object(**UPLOADS["template"])))
            except ClientError as err:
                outcomes.append((type(err), _without_date(err.response)))
    assert outcomes[1] == outcomes[0]


def _requests() -> float:
    labels = {"service": "s3", "operation": "PutObject"}
    return REGISTRY.get_sample_value("memeforge_aws_requests_total", labels) or 0.0


async def test_a_5xx_is_retried_and_each_attempt_counted(stub: Stub) -> None:
    stub.script += [(503, XML, _xml_error("SlowDown", "Reduce your request rate")), OK]
    before = _requests()
    async with clients(stub.url, retries=1) as (_, lean):
        lean._transport._sleep = no_sleep
        response = await lean.put_object(**UPLOADS["output"])
    assert response["ResponseMetadata"]["RetryAttempts"] == 1
    assert _requests() == before + 2
    assert [seen.headers["amz-sdk-request"] for seen in stub.seen] == ["attempt=1", "attempt=2"]
    assert stub.seen[0].body == stub.seen[1].body


async def no_sleep(_: float) -> None:
    return None


@pytest.mark.parametrize(
    "extra",
    [
        {"ChecksumAlgorithm": "SHA256"},
        {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": "k" * 32},
        {"Metadata": {"name": "caf\u00e9"}},
    ],
)
async def test_other_uploads_go_to_aiobotocore(stub: Stub, extra: dict[str, Any]) -> None:
    params = {**UPLOADS["output"], **extra}
    async with clients(stub.url) as (_, lean):
        assert await lean.lean_request(dict(params)) is None


async def test_an_invalid_bucket_name_is_botocores_error(stub: Stub) -> None:
    async with clients(stub.url) as (client, lean):
        errors = []
        for each in (client, lean):
            with pytest.raises(ParamValidationError) as raised:
                await each.put_object(**{**UPLOADS["output"], "Bucket": "no/such"})
            errors.append((type(raised.value), str(raised.value)))
    assert errors[0] == errors[1]
    assert stub.seen == []


@pytest.mark.parametrize("lean", [True, False])
async def test_memeforge_lean_calls_switches_s3_too(
    stub: Stub, lean: bool, monkeypatch: pytest.MonkeyPatch, aws_endpoints: None
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", stub.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    monkeypatch.setenv("MEMEFORGE_LEAN_CALLS", "1" if lean else "0")
    async with AwsClients.open(Settings()) as aws:
        assert isinstance(aws.s3, LeanS3) is lean
        await aws.s3.put_object(**UPLOADS["output"])
    assert len(stub.seen) == 1


async def test_other_s3_signing_settings_stay_aiobotocores(stub: Stub) -> None:
    session = aioboto3.Session(
        region_name="eu-west-1", aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="s"
    )
    for setting in (
        AioConfig(request_checksum_calculation="when_required"),
        AioConfig(s3={"payload_signing_enabled": True}),
    ):
        config = client_config(s3=True).merge(setting)
        async with session.client("s3", endpoint_url=stub.url, config=config) as client:  # type: ignore[call-overload]
            credentials = await session_credentials(session)
            assert await lean_s3(client, credentials, no_refresh) is client

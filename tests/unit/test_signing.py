"""memeforge_common.signing signs exactly as botocore does: the same headers for every
request shape the services send (and some they don't), through real clients, with
rotating credentials. A botocore upgrade that changes SigV4 fails here."""

from __future__ import annotations

import copy
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import aioboto3
import pytest
from botocore import auth as botocore_auth
from botocore.auth import S3SigV4Auth, SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import NoCredentialsError
from memeforge_common import botocompat, signing
from memeforge_common.aws import client_config

from tests.support.credentials import Vendor, refreshable

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
JSON_BODY = b'{"TableName": "memeforge-memes", "Key": {"id": {"S": "abc"}}}'


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(botocore_auth, "get_current_datetime", lambda: NOW)


def request(
    url: str,
    *,
    method: str = "POST",
    data: Any = JSON_BODY,
    headers: dict[str, str] | None = None,
    params: Any = None,
    context: dict[str, Any] | None = None,
) -> AWSRequest:
    made = AWSRequest(method=method, url=url, data=data, headers=headers or {}, params=params)
    made.context.update(context or {})
    return made


SHAPES = {
    "dynamodb json": request(
        "http://127.0.0.1:4566/",
        headers={
            "X-Amz-Target": "DynamoDB_20120810.UpdateItem",
            "Content-Type": "application/x-amz-json-1.0",
            "User-Agent": "not signed",
        },
    ),
    "https, default port, upper-case host": request(
        "https://DynamoDB.us-east-1.amazonaws.com:443/", headers={"X-Amz-Target": "x"}
    ),
    "str body, spaces to trim": request(
        "https://sqs.us-east-1.amazonaws.com/", data="Action=x", headers={"X-Odd": "  a   b  "}
    ),
    "query protocol, dict body": request(
        "https://sqs.us-east-1.amazonaws.com/", data={"Action": "SendMessage", "A": "b c"}
    ),
    "empty body": request("http://localhost:4566/q", method="GET", data=b""),
    "query in url": request("http://127.0.0.1:4566/b/k?versionId=2&acl=", method="GET", data=b""),
    "params": request(
        "http://127.0.0.1:4566/b", method="GET", data=b"", params={"z": 1, "a": "x y"}
    ),
    "file body": request("http://127.0.0.1:4566/b/k", method="PUT", data=io.BytesIO(b"pixels")),
    "host header given": request("http://127.0.0.1:4566/", headers={"Host": "elsewhere:81"}),
    "ipv6": request("http://[::1]:4566/"),
    "unsigned payload": request(
        "https://s3.amazonaws.com/b/k", data=b"x", context={"payload_signing_enabled": False}
    ),
    "dot segments": request("http://127.0.0.1:4566/a/./b/../c"),
}


def signed(cls: type[SigV4Auth], shape: AWSRequest, credentials: Credentials) -> dict[str, str]:
    made = copy.deepcopy(shape)
    cls(credentials, "dynamodb", "eu-west-1").add_auth(made)
    if hasattr(made.data, "seek"):
        made.data.seek(0)
    return dict(made.headers.items())


@pytest.mark.parametrize("token", [None, "session-token"])
@pytest.mark.parametrize("name", sorted(SHAPES))
@pytest.mark.parametrize(
    "classes", [(SigV4Auth, signing.FastSigV4Auth), (S3SigV4Auth, signing.FastS3SigV4Auth)]
)
def test_the_fast_signers_sign_every_shape_as_botocore_does(
    name: str, token: str | None, classes: tuple[type[SigV4Auth], type[SigV4Auth]]
) -> None:
    credentials = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    botocores, ours = classes
    expected = signed(botocores, SHAPES[name], credentials)
    assert "Authorization" in expected
    assert signed(ours, SHAPES[name], credentials) == expected


POSTS = {
    "dynamodb json": ("http://127.0.0.1:4566/", JSON_BODY, SHAPES["dynamodb json"].headers),
    "sqs json, query mode": (
        "https://sqs.us-east-1.amazonaws.com/",
        b'{"QueueUrl": "q", "MessageBody": "\\u00fc"}',
        {
            "X-Amz-Target": "AmazonSQS.SendMessage",
            "Content-Type": "application/x-amz-json-1.0",
            "x-amzn-query-mode": "true",
            "User-Agent": "not signed",
        },
    ),
    "default port, upper-case host": (
        "https://DynamoDB.us-east-1.amazonaws.com:443/",
        b"{}",
        {"X-Amz-Target": "x"},
    ),
    "spaces to trim, empty body": ("http://[::1]:4566/", b"", {"X-Odd": "  a   b  "}),
    "a path": ("http://127.0.0.1:4566/prefix/./a/../", b"{}", {"X-Amz-Target": "x"}),
}


@pytest.mark.parametrize("token", [None, "session-token"])
@pytest.mark.parametrize("name", sorted(POSTS))
def test_lean_posts_are_signed_as_botocore_signs_them(name: str, token: str | None) -> None:
    url, body, headers = POSTS[name]
    credentials = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    expected = signed(SigV4Auth, request(url, data=body, headers=dict(headers)), credentials)
    ours = signing.signed_post_headers(
        credentials.get_frozen_credentials(),
        "dynamodb",
        "eu-west-1",
        url,
        dict(headers),
        body,
        timestamp=NOW.strftime("%Y%m%dT%H%M%SZ"),
    )
    assert list(ours.items()) == list(expected.items())  # the same headers, in botocore's order


def test_a_lean_post_without_credentials_is_botocores_error() -> None:
    with pytest.raises(NoCredentialsError):
        signing.signed_post_headers(None, "sqs", "us-east-1", "http://h/", {}, b"{}")


def test_a_new_secret_or_day_gets_a_new_signing_key(monkeypatch: pytest.MonkeyPatch) -> None:
    shape = SHAPES["dynamodb json"]
    for secret in ("first-secret", "second-secret"):
        credentials = Credentials("AKIDEXAMPLE", secret)
        assert signed(signing.FastSigV4Auth, shape, credentials) == signed(
            SigV4Auth, shape, credentials
        )
    monkeypatch.setattr(botocore_auth, "get_current_datetime", lambda: NOW.replace(day=5))
    credentials = Credentials("AKIDEXAMPLE", "second-secret")
    assert signed(signing.FastSigV4Auth, shape, credentials) == signed(
        SigV4Auth, shape, credentials
    )


def test_only_botocores_exact_standard_signers_are_replaced() -> None:
    credentials = Credentials("a", "b")
    assert type(signing.faster(SigV4Auth(credentials, "s", "r"))) is signing.FastSigV4Auth
    assert type(signing.faster(S3SigV4Auth(credentials, "s", "r"))) is signing.FastS3SigV4Auth
    presigner = SigV4QueryAuth(credentials, "s", "r")
    assert type(signing.faster(presigner)) is SigV4QueryAuth


class Sent(Exception):
    """Raised by the before-send hook: the signed request, caught before it leaves."""

    def __init__(self, headers: dict[str, str]) -> None:
        super().__init__("caught before sending")
        self.headers = headers


@asynccontextmanager
async def client(service: str, session: aioboto3.Session, fast: bool) -> AsyncIterator[Any]:
    config = client_config(s3=service == "s3")
    async with session.client(service, endpoint_url="http://127.0.0.1:9", config=config) as made:
        if fast:
            signing.install(made)

        def catch(request: Any, **_: Any) -> None:
            raise Sent(
                {k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
            )

        made.meta.events.register("before-send", catch)
        yield made


def pinned_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore's per-request random ids (invocation id, idempotency tokens), fixed."""
    import uuid

    fixed = uuid.UUID(int=7)
    monkeypatch.setattr(uuid, "uuid4", lambda: fixed)


CALLS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "dynamodb UpdateItem": (
        "dynamodb",
        "update_item",
        {
            "TableName": "memeforge-memes",
            "Key": {"id": {"S": "abc"}},
            "UpdateExpression": "SET #s = :to",
            "ExpressionAttributeNames": {"#s": "state"},
            "ExpressionAttributeValues": {":to": {"S": "QUEUED"}},
        },
    ),
    "dynamodb TransactWriteItems": (
        "dynamodb",
        "transact_write_items",
        {"TransactItems": [{"Put": {"TableName": "t", "Item": {"id": {"S": "abc"}}}}]},
    ),
    "sqs SendMessageBatch": (
        "sqs",
        "send_message_batch",
        {
            "QueueUrl": "http://127.0.0.1:9/000000000000/q",
            "Entries": [{"Id": "0", "MessageBody": '{"v": 1}'}],
        },
    ),
    "s3 PutObject": (
        "s3",
        "put_object",
        {"Bucket": "memeforge", "Key": "memes/a b.png", "Body": b"png", "ContentType": "image/png"},
    ),
    "s3 GetObject": (
        "s3",
        "get_object",
        {"Bucket": "memeforge", "Key": "t/x.png", "IfMatch": '"e"'},
    ),
    "s3 HeadObject": ("s3", "head_object", {"Bucket": "memeforge", "Key": "t/x.png"}),
}


async def sent(session: aioboto3.Session, call: str, fast: bool) -> dict[str, str]:
    service, method, params = CALLS[call]
    before = signing._signing_key.cache_info()
    async with client(service, session, fast) as made:
        with pytest.raises(Sent) as caught:
            await getattr(made, method)(**params)
    after = signing._signing_key.cache_info()
    assert (after.hits + after.misses > before.hits + before.misses) == fast  # who signed
    return caught.value.headers


@pytest.mark.parametrize("call", sorted(CALLS))
async def test_clients_send_the_same_signed_requests_with_the_fast_signer(
    call: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pinned_ids(monkeypatch)
    session = aioboto3.Session(
        region_name="us-east-1", aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret"
    )
    expected = await sent(session, call, fast=False)
    assert expected["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260304/")
    assert await sent(session, call, fast=True) == expected


async def test_presigned_urls_are_botocores(monkeypatch: pytest.MonkeyPatch) -> None:
    session = aioboto3.Session(
        region_name="us-east-1", aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret"
    )
    urls = []
    for fast in (False, True):
        async with client("s3", session, fast) as made:
            params = {"Bucket": "memeforge", "Key": "memes/x.png"}
            urls.append(await made.generate_presigned_url("get_object", Params=params))
    assert "X-Amz-Signature=" in urls[0]
    assert urls[1] == urls[0]


async def test_rotated_credentials_sign_the_next_request() -> None:
    """Refreshable credentials: each request signs with the keys current at that moment."""
    vendor = Vendor()
    credentials = await refreshable(vendor)
    session = aioboto3.Session(region_name="us-east-1")
    call = CALLS["dynamodb UpdateItem"]
    async with client("dynamodb", session, fast=True) as made:
        botocompat.request_signer(made)._credentials = credentials
        seen = []
        for _ in range(2):
            with pytest.raises(Sent) as caught:
                await getattr(made, call[1])(**call[2])
            seen.append(caught.value.headers)
            await botocompat.refresh_now(credentials)
    assert "Credential=AKIA0000000000000001/" in seen[0]["Authorization"]
    assert seen[0]["X-Amz-Security-Token"] == "token-1"
    assert "Credential=AKIA0000000000000002/" in seen[1]["Authorization"]
    assert seen[1]["X-Amz-Security-Token"] == "token-2"


async def test_the_services_clients_sign_with_the_fast_signer(
    monkeypatch: pytest.MonkeyPatch, aws_endpoints: None
) -> None:
    from memeforge_common.aws import AwsClients

    from tests.support.settings import unique_settings

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    async with AwsClients.open(unique_settings(aws_region="us-east-1")) as aws:
        for made in (aws.s3, aws.sqs, aws.dynamodb):
            signer = botocompat.request_signer(made)
            auth = await signer.get_auth_instance(
                signing_name="x", region_name="us-east-1", signature_version="v4"
            )
            assert type(auth) is signing.FastSigV4Auth

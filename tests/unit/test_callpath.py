"""memeforge_common.callpath: what it takes off a client changes nothing that is sent but
the ``Expect`` header, checked on real clients' requests, caught before they leave."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aioboto3
import pytest
from memeforge_common import botocompat, callpath
from memeforge_common.aws import client_config

pytestmark = pytest.mark.unit


class Caught(Exception):
    def __init__(self, request: Any) -> None:
        super().__init__("caught before sending")
        self.request = request


def catch(request: Any, **_: Any) -> None:
    raise Caught(request)


@asynccontextmanager
async def s3_client(*, trimmed: bool, endpoint_url: str | None) -> AsyncIterator[Any]:
    session = aioboto3.Session(
        region_name="eu-west-1", aws_access_key_id="test", aws_secret_access_key="test"
    )
    async with session.client("s3", endpoint_url=endpoint_url, config=client_config(s3=True)) as s3:
        if trimmed:
            callpath.trim(s3)
        s3.meta.events.register("before-send", catch)
        yield s3


async def sent(s3: Any, key: str) -> Any:
    with pytest.raises(Caught) as caught:
        await s3.put_object(Bucket="memeforge", Key=key, Body=b"x" * 1000)
    return caught.value.request


def signed_headers(request: Any) -> bytes:
    return bytes(request.headers["Authorization"].split(b"SignedHeaders=")[1].split(b",")[0])


def test_only_parameters_no_rule_reads_are_unread() -> None:
    ruleset = {
        "parameters": {
            "Region": {"type": "String", "builtIn": "AWS::Region"},
            "Bucket": {"type": "String"},
            "Key": {"type": "String"},
            "UseFIPS": {"type": "Boolean", "required": True, "default": False},
        },
        "rules": [
            {
                "conditions": [{"fn": "isSet", "argv": [{"ref": "Region"}]}],
                "endpoint": {"url": "https://{Bucket}.example.com", "headers": {}},
                "type": "endpoint",
            }
        ],
    }
    # Region read as a reference, Bucket in a URL template, UseFIPS required.
    assert callpath.unread_params(ruleset) == {"Key"}


async def test_s3s_object_key_parameters_are_left_out() -> None:
    async with s3_client(trimmed=True, endpoint_url=None) as s3:
        assert {"Key", "Prefix", "CopySource"} <= callpath.skip_unread_endpoint_params(s3)
        assert "Bucket" in botocompat.endpoint_params(s3)
        assert "Key" not in botocompat.endpoint_params(s3)


@pytest.mark.parametrize("endpoint_url", [None, "http://127.0.0.1:9"])
async def test_s3_requests_go_where_botocore_sends_them_with_one_resolution(
    endpoint_url: str | None,
) -> None:
    """AWS (virtual-hosted bucket) and an emulator (path style): the same URL and signed
    headers as an untrimmed client, and S3's ruleset runs once for five object keys."""
    keys = [f"memes/t/{i:032x}.jpeg" for i in range(5)]
    async with (
        s3_client(trimmed=False, endpoint_url=endpoint_url) as plain,
        s3_client(trimmed=True, endpoint_url=endpoint_url) as trimmed,
    ):
        ruleset = trimmed._ruleset_resolver._provider.ruleset
        evaluate = ruleset.evaluate
        runs = []

        def counted(params: Any) -> Any:
            runs.append(params)
            return evaluate(params)

        ruleset.evaluate = counted
        for key in keys:
            ours, botocores = await sent(trimmed, key), await sent(plain, key)
            assert ours.url == botocores.url
            assert key in ours.url
            assert "Key" not in runs[0]
            assert signed_headers(ours) == signed_headers(botocores)
        assert len(runs) == 1


async def test_s3_uploads_do_not_wait_for_100_continue() -> None:
    async with (
        s3_client(trimmed=False, endpoint_url="http://127.0.0.1:9") as plain,
        s3_client(trimmed=True, endpoint_url="http://127.0.0.1:9") as trimmed,
    ):
        assert (await sent(plain, "k")).headers.get("Expect") == b"100-continue"
        assert "Expect" not in (await sent(trimmed, "k")).headers


async def test_dynamodb_and_sqs_keep_every_parameter() -> None:
    """Their rules read every parameter they declare (account id, table ARNs)."""
    session = aioboto3.Session(
        region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
    )
    for service in ("dynamodb", "sqs"):
        async with session.client(service, config=client_config()) as client:
            before = dict(botocompat.endpoint_params(client))
            assert callpath.skip_unread_endpoint_params(client) == frozenset()
            assert botocompat.endpoint_params(client) == before

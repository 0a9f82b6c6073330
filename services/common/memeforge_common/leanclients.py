"""Drop-in DynamoDB, SQS and S3 clients whose hot operations take the lean transport.

``AwsClients.open`` hands these out in place of the aiobotocore clients: the hot methods
have the aiobotocore method's name and keyword arguments and return what it returns
(leancalls.py), every other attribute (``meta``, ``exceptions``, ``get_paginator``, the
rare operations) is the aiobotocore client's own. Call sites and unit-test fakes stay as
they are.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar, cast

from botocore import handlers, xform_name

from memeforge_common import botocompat
from memeforge_common.leancalls import CredentialSource, LeanTransport, Request, RetryDecider
from memeforge_common.s3put import BucketEndpoint, PutObject

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_sqs import SQSClient

LeanMethod = Callable[..., Awaitable[dict[str, Any]]]


def _lean(operation: str) -> LeanMethod:
    async def call(self: LeanClient, **params: Any) -> dict[str, Any]:
        return await self._make_api_call(operation, params)

    call.__name__ = xform_name(operation)
    call.__doc__ = f"{operation}, through the lean transport."
    return call


class LeanClient:
    """An aiobotocore client with its hot operations sent by a LeanTransport."""

    OPERATIONS: ClassVar[tuple[str, ...]] = ()
    """The hot operations, each a method named as aiobotocore's (``update_item``)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for operation in cls.OPERATIONS:
            setattr(cls, xform_name(operation), _lean(operation))

    def __init__(self, client: Any, transport: LeanTransport) -> None:
        self._client = client
        self._transport = transport

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    @classmethod
    def json_operations(cls) -> tuple[str, ...]:
        """The operations the transport sends by name (AWS JSON ones)."""
        return cls.OPERATIONS

    async def _make_api_call(self, operation_name: str, params: dict[str, Any]) -> dict[str, Any]:
        """The one door every lean call goes through, named and shaped as aiobotocore's
        (bench/calltrace.py wraps both)."""
        return await self._call(operation_name, params)

    async def _call(self, operation_name: str, params: dict[str, Any]) -> dict[str, Any]:
        return await self._transport.call(operation_name, params)


class LeanDynamoDB(LeanClient):
    OPERATIONS = (
        "TransactWriteItems",
        "UpdateItem",
        "PutItem",
        "GetItem",
        "BatchGetItem",
        "Query",
        "DeleteItem",
    )


class LeanSQS(LeanClient):
    OPERATIONS = (
        "SendMessageBatch",
        "ReceiveMessage",
        "DeleteMessageBatch",
        "SendMessage",
        "DeleteMessage",
        "ChangeMessageVisibilityBatch",
    )


SIGV4_AUTH_TYPES = frozenset({"v4", "s3v4"})
"""The auth types signed as S3SigV4Auth signs (not SigV4a, S3 Express, unsigned)."""


class LeanS3(LeanClient):
    """S3 with ``put_object`` on the lean transport (s3put.py) for the buckets and params
    it can send as botocore does; any other upload goes to the aiobotocore client."""

    OPERATIONS = ("PutObject",)

    def __init__(self, client: Any, transport: LeanTransport) -> None:
        super().__init__(client, transport)
        self._put = PutObject(client, transport.user_agent)
        self._endpoints: dict[str, BucketEndpoint | None] = {}

    @classmethod
    def json_operations(cls) -> tuple[str, ...]:
        return ()

    async def _call(self, operation_name: str, params: dict[str, Any]) -> dict[str, Any]:
        lean = operation_name == self._put.name
        request = await self.lean_request(params) if lean else None
        if request is None:
            result: dict[str, Any] = await self._client._make_api_call(operation_name, params)
            return result
        return await self._transport.send(self._put, request)

    async def lean_request(self, params: dict[str, Any]) -> Request | None:
        """The request the lean transport sends for a PutObject of ``params`` (signed per
        attempt), or None where the aiobotocore client sends it."""
        bucket = params.get("Bucket")
        endpoint = await self._endpoint(bucket) if isinstance(bucket, str) else None
        if endpoint is None or not self._put.handles(params):
            return None
        return self._put.request(endpoint, params)

    async def _endpoint(self, bucket: str) -> BucketEndpoint | None:
        """The bucket's endpoint (botocore's ruleset, asked once per bucket), or None where
        the lean transport would not send as botocore does: an invalid bucket name
        (botocore raises its error), a proxy, another signer."""
        if bucket in self._endpoints:
            return self._endpoints[bucket]
        endpoint = None
        if handlers.VALID_BUCKET.search(bucket) or handlers.VALID_S3_ARN.search(bucket):
            url, headers, auth_type, signing = await botocompat.resolve_endpoint(
                self._client, self._put.model, {"Bucket": bucket}
            )
            if auth_type in SIGV4_AUTH_TYPES and not botocompat.is_proxied(self._client, url):
                endpoint = BucketEndpoint(
                    url=url,
                    headers=headers,
                    signing_name=signing.get("signing_name", "s3"),
                    region=signing.get("region", self._client.meta.region_name),
                )
        self._endpoints[bucket] = endpoint
        return endpoint


async def _wrap(
    kind: type[LeanClient], client: Any, credentials: object, refresh: RetryDecider
) -> Any:
    """``client`` as a ``kind``, or as it is where the lean transport would not send as
    it does: a proxy or another HTTP library, a retry mode other than standard, or no
    credentials (botocore then raises its NoCredentialsError itself)."""
    if credentials is None or client.meta.config.retries.get("mode") != "standard":
        return client
    http = await botocompat.aiohttp_session(client)
    if http is None:
        return client
    transport = LeanTransport(
        client=client,
        http=http,
        credentials=cast(CredentialSource, credentials),
        user_agent=botocompat.user_agent(client),
        refresh=refresh,
        operations=kind.json_operations(),
    )
    return kind(client, transport)


async def lean_dynamodb(
    client: DynamoDBClient, credentials: object, refresh: RetryDecider
) -> DynamoDBClient:
    return cast("DynamoDBClient", await _wrap(LeanDynamoDB, client, credentials, refresh))


async def lean_sqs(client: SQSClient, credentials: object, refresh: RetryDecider) -> SQSClient:
    return cast("SQSClient", await _wrap(LeanSQS, client, credentials, refresh))


def _standard_s3_signing(client: Any) -> bool:
    """Whether S3 signs with botocore's defaults (payload signed over http only, the default
    flexible checksum), the only ones s3put.py sends as botocore does."""
    config = client.meta.config
    return (
        config.request_checksum_calculation == "when_supported"
        and (config.s3 or {}).get("payload_signing_enabled") is None
    )


async def lean_s3(client: S3Client, credentials: object, refresh: RetryDecider) -> S3Client:
    if not _standard_s3_signing(client):
        return client
    return cast("S3Client", await _wrap(LeanS3, client, credentials, refresh))

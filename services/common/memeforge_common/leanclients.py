"""Drop-in DynamoDB and SQS clients whose hot operations take the lean transport.

``AwsClients.open`` hands these out in place of the aiobotocore clients: the hot methods
have the aiobotocore method's name and keyword arguments and return what it returns
(leancalls.py), every other attribute (``meta``, ``exceptions``, ``get_paginator``, the
rare operations) is the aiobotocore client's own. Call sites and unit-test fakes stay as
they are.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar, cast

from botocore import xform_name

from memeforge_common import botocompat
from memeforge_common.leancalls import CredentialSource, LeanTransport, RetryDecider

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
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

    async def _make_api_call(self, operation_name: str, params: dict[str, Any]) -> dict[str, Any]:
        """The one door every lean call goes through, named and shaped as aiobotocore's
        (bench/calltrace.py wraps both)."""
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
        operations=kind.OPERATIONS,
    )
    return kind(client, transport)


async def lean_dynamodb(
    client: DynamoDBClient, credentials: object, refresh: RetryDecider
) -> DynamoDBClient:
    return cast("DynamoDBClient", await _wrap(LeanDynamoDB, client, credentials, refresh))


async def lean_sqs(client: SQSClient, credentials: object, refresh: RetryDecider) -> SQSClient:
    return cast("SQSClient", await _wrap(LeanSQS, client, credentials, refresh))

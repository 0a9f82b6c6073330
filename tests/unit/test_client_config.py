"""What memeforge_common.aws.client_config makes the SDK send: checked on the request
itself, caught by a ``before-send`` hook before anything leaves the process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import aioboto3
import pytest
from memeforge_common.aws import USER_AGENT, client_config

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

pytestmark = pytest.mark.unit


class Caught(Exception):
    """Raised by the hook: the request got as far as being sent."""

    def __init__(self, headers: Any) -> None:
        super().__init__("caught before sending")
        self.headers = headers


def catch(request: Any, **_: Any) -> None:
    raise Caught(request.headers)


@asynccontextmanager
async def caught_dynamodb() -> AsyncIterator[DynamoDBClient]:
    """A DynamoDB client as the services configure it, whose requests never leave."""
    session = aioboto3.Session(
        region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
    )
    async with session.client(
        "dynamodb", endpoint_url="http://127.0.0.1:9", config=client_config()
    ) as dynamodb:
        dynamodb.meta.events.register("before-send", catch)
        yield dynamodb


def test_the_user_agent_is_botocores_with_the_app_named() -> None:
    assert USER_AGENT.startswith("aiobotocore/")
    assert " Botocore/" in USER_AGENT
    assert USER_AGENT.endswith(" app/memeforge")


async def test_every_request_carries_the_user_agent_built_once() -> None:
    """docs/architecture.md "the User-Agent is built once per process instead of twice per
    request"."""
    async with caught_dynamodb() as dynamodb:
        sent = []
        for _ in range(2):
            with pytest.raises(Caught) as caught:
                await dynamodb.get_item(TableName="t", Key={"id": {"S": "a"}})
            sent.append(caught.value.headers["User-Agent"])
    # The session's own extra (aiobotocore's "botocore/<version>") is appended to it.
    assert sent[0] == sent[1]
    assert sent[0].startswith(USER_AGENT.encode())


async def test_parameters_are_not_validated_twice() -> None:
    """docs/architecture.md "botocore does not validate parameters again": a call botocore
    would have refused on the spot (ParamValidationError) goes out, and AWS answers it
    with a ValidationException."""
    async with caught_dynamodb() as dynamodb:
        with pytest.raises(Caught):
            await dynamodb.get_item(TableName="t", Key={"id": {"S": 5}})

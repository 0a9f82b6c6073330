"""memeforge_common.leancalls / leanclients: the lean transport sends what aiobotocore
sends and returns or raises what it returns or raises, retries as its standard mode does,
reads credentials per attempt, refreshes refused ones and counts every attempt.

Both clients talk over HTTP on loopback to an in-process server that records each
request and answers from a script (unit tests: the emulators are integration's)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aioboto3
import pytest
from aiobotocore.credentials import AioCredentials
from aiohttp import web
from botocore import xform_name
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    EndpointConnectionError,
)
from memeforge_common import botocompat, signing
from memeforge_common.aws import (
    AwsClients,
    RefreshOnCredentialError,
    Timeouts,
    client_config,
    session_credentials,
)
from memeforge_common.leancalls import LeanTransport
from memeforge_common.leanclients import LeanClient, LeanDynamoDB, LeanSQS
from memeforge_common.settings import Settings
from prometheus_client import REGISTRY

from devenv.run.proc import free_port
from tests.support.credentials import Vendor, refreshable
from tests.support.httpstub import serving

pytestmark = pytest.mark.unit

Answer = tuple[int, dict[str, str], bytes]
OK: Answer = (200, {"x-amzn-RequestId": "req-1"}, b"{}")


@dataclass
class Seen:
    headers: dict[str, str]
    body: bytes


@dataclass
class Stub:
    """Records every request; answers each from ``script`` (then ``OK``)."""

    url: str
    script: list[Answer] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append(Seen(dict(request.headers), await request.read()))
        status, headers, body = self.script.pop(0) if self.script else OK
        headers = {"Content-Type": "application/x-amz-json-1.0", **headers}
        return web.Response(status=status, headers=headers, body=body)


@pytest.fixture
async def stub() -> AsyncIterator[Stub]:
    server = Stub("")
    async with serving(server.handle, "POST") as url:
        server.url = url
        yield server


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


async def no_refresh(**_: Any) -> float | None:
    return None


@asynccontextmanager
async def clients(
    url: str,
    service: str,
    *,
    retries: int = 0,
    credentials: Any = None,
    refresh: Callable[..., Awaitable[float | None]] = no_refresh,
    sleep: Sleeps | None = None,
) -> AsyncIterator[tuple[Any, LeanClient]]:
    """An aiobotocore client (as AwsClients.open sets one up) and the lean one over it.
    ``retries``: the config's max_attempts (retries after the first attempt)."""
    session = aioboto3.Session(
        region_name="us-east-1", aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="s"
    )
    config = client_config(timeouts=Timeouts(connect_s=1, read_s=5, max_attempts=retries))
    async with session.client(service, endpoint_url=url, config=config) as client:  # type: ignore[call-overload]
        signing.install(client)
        http = await botocompat.aiohttp_session(client)
        assert http is not None
        kind = LeanDynamoDB if service == "dynamodb" else LeanSQS
        transport = LeanTransport(
            client=client,
            http=http,
            credentials=credentials or await session_credentials(session),
            user_agent=botocompat.user_agent(client),
            refresh=refresh,
            operations=kind.OPERATIONS,
            sleep=sleep or Sleeps(),
        )
        yield client, kind(client, transport)


QUEUE = "http://127.0.0.1/000000000000/q"
CALLS: list[tuple[str, str, dict[str, Any]]] = [
    (
        "dynamodb",
        "update_item",
        {
            "TableName": "t",
            "Key": {"id": {"S": "a" * 32}},
            "UpdateExpression": "SET #s = :to",
            "ConditionExpression": "#s = :from",
            "ExpressionAttributeNames": {"#s": "state"},
            "ExpressionAttributeValues": {":to": {"S": "DONE"}, ":from": {"S": "PENDING"}},
            "ReturnValues": "ALL_NEW",
        },
    ),
    (
        "dynamodb",
        "transact_write_items",
        {
            "TransactItems": [{"Put": {"TableName": "t", "Item": {"id": {"S": "x"}}}}],
            "ClientRequestToken": "tok",
        },
    ),
    ("dynamodb", "get_item", {"TableName": "t", "Key": {"id": {"S": "x"}}}),
    ("dynamodb", "put_item", {"TableName": "t", "Item": {"id": {"S": "x"}, "b": {"B": b"\x00"}}}),
    (
        "sqs",
        "send_message_batch",
        {
            "QueueUrl": QUEUE,
            "Entries": [
                {
                    "Id": "0",
                    "MessageBody": json.dumps({"meme_id": "a"}),
                    "MessageAttributes": {"tp": {"DataType": "String", "StringValue": "00-1"}},
                }
            ],
        },
    ),
    (
        "sqs",
        "receive_message",
        {"QueueUrl": QUEUE, "MaxNumberOfMessages": 10, "WaitTimeSeconds": 0},
    ),
    (
        "sqs",
        "delete_message_batch",
        {"QueueUrl": QUEUE, "Entries": [{"Id": "0", "ReceiptHandle": "r"}]},
    ),
]
# Differ per request or per second; the rest of each header must be the same.
VARYING = {"X-Amz-Date", "Authorization", "amz-sdk-invocation-id"}


def signed_headers(authorization: str) -> str:
    return authorization.split("SignedHeaders=")[1].split(",")[0]


@pytest.mark.parametrize(("service", "method", "params"), CALLS)
async def test_the_request_is_aiobotocores(
    stub: Stub, service: str, method: str, params: dict[str, Any]
) -> None:
    async with clients(stub.url, service) as (client, lean):
        await getattr(client, method)(**params)
        await getattr(lean, method)(**params)
    theirs, ours = stub.seen
    assert ours.body == theirs.body
    assert {k: v for k, v in ours.headers.items() if k not in VARYING} == {
        k: v for k, v in theirs.headers.items() if k not in VARYING
    }
    assert set(ours.headers) == set(theirs.headers)
    assert signed_headers(ours.headers["Authorization"]) == signed_headers(
        theirs.headers["Authorization"]
    )


def _without_date(response: dict[str, Any]) -> dict[str, Any]:
    metadata = dict(response["ResponseMetadata"])
    metadata["HTTPHeaders"] = {
        k: v for k, v in metadata["HTTPHeaders"].items() if k not in ("date", "server")
    }
    return response | {"ResponseMetadata": metadata}


ITEM = {"id": {"S": "x"}, "state": {"S": "DONE"}, "n": {"N": "1"}, "raw": {"B": "AP8="}}
DDB = "com.amazonaws.dynamodb.v20120810#"
ANSWERS: list[tuple[str, str, dict[str, Any], Answer]] = [
    (
        "dynamodb",
        "get_item",
        CALLS[2][2],
        (200, {"x-amzn-RequestId": "r"}, json.dumps({"Item": ITEM}).encode()),
    ),
    ("dynamodb", "update_item", CALLS[0][2], (200, {}, json.dumps({"Attributes": ITEM}).encode())),
    (
        "dynamodb",
        "update_item",
        CALLS[0][2],
        (
            400,
            {"x-amzn-RequestId": "r"},
            json.dumps(
                {
                    "__type": DDB + "ConditionalCheckFailedException",
                    "message": "The conditional request failed",
                }
            ).encode(),
        ),
    ),
    (
        "dynamodb",
        "transact_write_items",
        CALLS[1][2],
        (
            400,
            {"x-amzn-RequestId": "r"},
            json.dumps(
                {
                    "__type": DDB + "TransactionCanceledException",
                    "Message": "Transaction cancelled [ConditionalCheckFailed]",
                    "CancellationReasons": [
                        {"Code": "ConditionalCheckFailed", "Message": "failed"}
                    ],
                }
            ).encode(),
        ),
    ),
    (
        "dynamodb",
        "put_item",
        CALLS[3][2],
        (
            400,
            {},
            json.dumps(
                {"__type": "com.amazon.coral.validate#ValidationException", "message": "bad"}
            ).encode(),
        ),
    ),
    ("dynamodb", "get_item", CALLS[2][2], (500, {}, b"<html>oops</html>")),
    (
        "sqs",
        "send_message_batch",
        CALLS[4][2],
        (
            400,
            {"x-amzn-query-error": "AWS.SimpleQueueService.NonExistentQueue;Sender"},
            json.dumps(
                {"__type": "com.amazonaws.sqs#QueueDoesNotExist", "message": "no queue"}
            ).encode(),
        ),
    ),
    (
        "sqs",
        "receive_message",
        CALLS[5][2],
        (
            200,
            {},
            json.dumps(
                {
                    "Messages": [
                        {
                            "MessageId": "m",
                            "ReceiptHandle": "r",
                            "Body": "{}",
                            "MD5OfBody": "0" * 32,
                        }
                    ]
                }
            ).encode(),
        ),
    ),
    ("sqs", "receive_message", CALLS[5][2], (200, {}, b"{}")),
]


@pytest.mark.parametrize(("service", "method", "params", "answer"), ANSWERS)
async def test_the_answer_is_aiobotocores(
    stub: Stub, service: str, method: str, params: dict[str, Any], answer: Answer
) -> None:
    """The same parsed response, or the same exception class with the same error_response."""
    outcomes = []
    async with clients(stub.url, service) as (client, lean):
        for each in (client, lean):
            stub.script.append(answer)
            try:
                outcomes.append(_without_date(await getattr(each, method)(**params)))
            except ClientError as err:
                outcomes.append((type(err), _without_date(err.response)))
    assert outcomes[1] == outcomes[0]


async def test_throttling_and_5xx_are_retried_with_backoff_and_each_attempt_counted(
    stub: Stub,
) -> None:
    throttled = json.dumps({"__type": DDB + "ThrottlingException", "message": "slow down"})
    stub.script += [(500, {}, b""), (400, {}, throttled.encode()), OK]
    sleeps = Sleeps()
    before = _requests("dynamodb", "GetItem")
    async with clients(stub.url, "dynamodb", retries=2, sleep=sleeps) as (_, lean):
        response = await lean.get_item(**CALLS[2][2])
    assert response["ResponseMetadata"]["RetryAttempts"] == 2
    assert _requests("dynamodb", "GetItem") - before == 3
    assert len(sleeps.delays) == 2
    assert all(0 <= d <= 2**n for n, d in enumerate(sleeps.delays))  # botocore's jitter
    attempts = [seen.headers["amz-sdk-request"] for seen in stub.seen]
    assert attempts == ["attempt=1", "attempt=2", "attempt=3"]
    assert len({seen.headers["amz-sdk-invocation-id"] for seen in stub.seen}) == 1
    assert len({seen.body for seen in stub.seen}) == 1


async def test_a_token_filled_in_stays_the_same_across_retries(stub: Stub) -> None:
    stub.script += [(503, {}, b""), OK]
    async with clients(stub.url, "dynamodb", retries=1) as (_, lean):
        await lean.transact_write_items(TransactItems=[])
    tokens = {json.loads(seen.body)["ClientRequestToken"] for seen in stub.seen}
    assert len(stub.seen) == 2
    assert len(tokens) == 1


async def test_retries_stop_at_max_attempts_with_the_last_error(stub: Stub) -> None:
    stub.script += [(503, {}, b"")] * 5
    async with clients(stub.url, "sqs", retries=2) as (_, lean):
        with pytest.raises(ClientError) as raised:
            await lean.send_message_batch(**CALLS[4][2])
    assert len(stub.seen) == 3
    metadata = raised.value.response["ResponseMetadata"]
    assert metadata["HTTPStatusCode"] == 503
    assert metadata["RetryAttempts"] == 2
    assert metadata["MaxAttemptsReached"] is True


async def test_a_modeled_error_is_not_retried(stub: Stub) -> None:
    stub.script += [ANSWERS[2][3]]
    async with clients(stub.url, "dynamodb", retries=3) as (client, lean):
        with pytest.raises(client.exceptions.ConditionalCheckFailedException):
            await lean.update_item(**CALLS[0][2])
    assert len(stub.seen) == 1


async def test_connection_errors_are_botocores_and_retried() -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    sleeps = Sleeps()
    before = _requests("sqs", "ReceiveMessage")
    async with clients(closed, "sqs", retries=2, sleep=sleeps) as (_, lean):
        with pytest.raises(EndpointConnectionError) as raised:
            await lean.receive_message(QueueUrl=QUEUE)
    assert isinstance(raised.value, BotoCoreError)
    assert _requests("sqs", "ReceiveMessage") - before == 3
    assert len(sleeps.delays) == 2


def _access_key(seen: Seen) -> str:
    return seen.headers["Authorization"].split("Credential=")[1].split("/")[0]


async def test_credentials_are_read_per_call(stub: Stub) -> None:
    credentials = AioCredentials("AKIAFIRST", "secret-1")
    async with clients(stub.url, "dynamodb", credentials=credentials) as (_, lean):
        await lean.get_item(**CALLS[2][2])
        credentials.access_key, credentials.secret_key = "AKIASECOND", "secret-2"
        await lean.get_item(**CALLS[2][2])
    assert [_access_key(seen) for seen in stub.seen] == ["AKIAFIRST", "AKIASECOND"]


class CredentialSession:
    def __init__(self, credentials: Any) -> None:
        self.credentials = credentials

    async def get_credentials(self) -> Any:
        return self.credentials


async def test_refused_credentials_are_refreshed_and_the_call_retried(stub: Stub) -> None:
    vendor = Vendor()
    credentials = await refreshable(vendor)
    refresh = RefreshOnCredentialError(CredentialSession(credentials))  # type: ignore[arg-type]
    refused = json.dumps({"__type": "UnrecognizedClientException", "message": "bad token"})
    stub.script.append((400, {}, refused.encode()))
    async with clients(stub.url, "sqs", credentials=credentials, refresh=refresh) as (_, lean):
        await lean.delete_message_batch(**CALLS[6][2])
    assert refresh.refreshes == 1
    assert vendor.fetches == 2
    assert [_access_key(seen) for seen in stub.seen] == [f"AKIA{1:016d}", f"AKIA{2:016d}"]
    assert [seen.headers["X-Amz-Security-Token"] for seen in stub.seen] == ["token-1", "token-2"]


def _requests(service: str, operation: str) -> float:
    labels = {"service": service, "operation": operation}
    return REGISTRY.get_sample_value("memeforge_aws_requests_total", labels) or 0.0


def _empty_receives() -> float:
    return REGISTRY.get_sample_value("memeforge_aws_empty_receives_total") or 0.0


async def test_empty_receives_are_counted_apart(stub: Stub) -> None:
    stub.script += [ANSWERS[-2][3], ANSWERS[-1][3]]
    before = _empty_receives()
    async with clients(stub.url, "sqs") as (_, lean):
        await lean.receive_message(**CALLS[5][2])
        assert _empty_receives() == before
        await lean.receive_message(**CALLS[5][2])
    assert _empty_receives() == before + 1


async def test_other_attributes_are_the_aiobotocore_clients(stub: Stub) -> None:
    stub.script.append((200, {}, json.dumps({"QueueUrl": QUEUE}).encode()))
    async with clients(stub.url, "sqs") as (client, lean):
        assert lean.meta is client.meta
        assert lean.exceptions is client.exceptions
        assert (await lean.get_queue_url(QueueName="q"))["QueueUrl"] == QUEUE
    assert json.loads(stub.seen[0].body) == {"QueueName": "q"}


@pytest.mark.parametrize("lean", [True, False])
async def test_memeforge_lean_calls_switches_the_transport(
    stub: Stub, lean: bool, monkeypatch: pytest.MonkeyPatch, aws_endpoints: None
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", stub.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    monkeypatch.setenv("MEMEFORGE_LEAN_CALLS", "1" if lean else "0")
    async with AwsClients.open(Settings()) as aws:
        assert isinstance(aws.dynamodb, LeanDynamoDB) is lean
        assert isinstance(aws.sqs, LeanSQS) is lean
        await aws.dynamodb.get_item(**CALLS[2][2])
    assert len(stub.seen) == 1


@pytest.mark.parametrize(("service", "kind"), [("dynamodb", LeanDynamoDB), ("sqs", LeanSQS)])
async def test_each_lean_method_is_named_as_the_aiobotocore_clients(
    stub: Stub, service: str, kind: type[LeanClient]
) -> None:
    async with clients(stub.url, service) as (client, _):
        for operation in kind.OPERATIONS:
            method = xform_name(operation)
            assert callable(getattr(client, method))
            assert method in vars(kind)  # the lean one, not forwarded


class FailingCredentials:
    async def get_frozen_credentials(self) -> Any:
        raise CredentialRetrievalError(provider="test", error_msg="provider down")


async def test_credentials_that_cannot_be_had_fail_the_call_at_once(stub: Stub) -> None:
    """As aiobotocore: signing is not part of the retried attempt."""
    sleeps = Sleeps()
    failing = FailingCredentials()
    async with clients(stub.url, "sqs", retries=3, credentials=failing, sleep=sleeps) as (_, lean):
        with pytest.raises(CredentialRetrievalError):
            await lean.delete_message_batch(**CALLS[6][2])
    assert stub.seen == []
    assert sleeps.delays == []

"""The lean transport (memeforge_common.leancalls) against the emulator over HTTP: every
hot DynamoDB and SQS operation does what aiobotocore's does and answers the same, and
refusals (a failed condition, a cancelled transaction, a missing queue) raise the same
exceptions. Runs on the default backend (moto) and on MEMEFORGE_BACKEND=localstack."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from memeforge_common.aws import AwsClients
from memeforge_common.leanclients import LeanDynamoDB, LeanS3, LeanSQS
from memeforge_common.queues import queue_url
from memeforge_common.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture
async def plain(resources: Settings) -> AsyncIterator[AwsClients]:
    """The same clients with MEMEFORGE_LEAN_CALLS=0: aiobotocore for everything."""
    async with AwsClients.open(resources.model_copy(update={"lean_calls": False})) as clients:
        assert not isinstance(clients.dynamodb, LeanDynamoDB)
        yield clients


def _body(response: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in response.items() if k != "ResponseMetadata"}


def _refusal(err: ClientError) -> tuple[str, Any, dict[str, Any]]:
    """The exception's class (by name: each session makes its own classes) and response."""
    response = _body(dict(err.response))
    return type(err).__name__, response.pop("Error"), response


ITEM = {
    "id": {"S": "lean-1"},
    "state": {"S": "PENDING"},
    "captions": {"L": [{"S": "top ünïcode ✓"}, {"S": 'say "hi"'}]},
    "state_times": {"M": {"PENDING": {"S": "2026-01-01T00:00:00.000000Z"}}},
    "n": {"N": "3"},
    "tags": {"SS": ["a", "b"]},
    "flag": {"BOOL": True},
    "none": {"NULL": True},
}


async def test_dynamodb_hot_operations_answer_as_aiobotocore(
    aws: AwsClients, plain: AwsClients, resources: Settings
) -> None:
    assert isinstance(aws.dynamodb, LeanDynamoDB)
    table = resources.table
    key = {"id": ITEM["id"]}
    await aws.dynamodb.put_item(TableName=table, Item=ITEM)
    lean_got = await aws.dynamodb.get_item(TableName=table, Key=key, ConsistentRead=True)
    plain_got = await plain.dynamodb.get_item(TableName=table, Key=key, ConsistentRead=True)
    assert _body(lean_got) == _body(plain_got)
    assert lean_got["Item"] == ITEM
    assert lean_got["ResponseMetadata"]["HTTPStatusCode"] == 200

    update = {
        "TableName": table,
        "Key": key,
        "UpdateExpression": "SET #s = :to",
        "ConditionExpression": "#s = :from",
        "ExpressionAttributeNames": {"#s": "state"},
        "ExpressionAttributeValues": {":to": {"S": "QUEUED"}, ":from": {"S": "PENDING"}},
        "ReturnValues": "ALL_NEW",
    }
    updated = await aws.dynamodb.update_item(**update)  # type: ignore[arg-type]
    assert updated["Attributes"] == ITEM | {"state": {"S": "QUEUED"}}

    # The same update again: the condition fails, for both clients alike.
    refusals = []
    for clients in (aws, plain):
        with pytest.raises(clients.dynamodb.exceptions.ConditionalCheckFailedException) as raised:
            await clients.dynamodb.update_item(**update)  # type: ignore[arg-type]
        refusals.append(_refusal(raised.value))
    assert refusals[0] == refusals[1]

    second = {"id": {"S": "lean-2"}, "state": {"S": "DONE"}}
    await aws.dynamodb.transact_write_items(  # no ClientRequestToken: filled in as botocore does
        TransactItems=[
            {"Put": {"TableName": table, "Item": second}},
            {
                "Update": {k: v for k, v in update.items() if k != "ReturnValues"}
                | {"ExpressionAttributeValues": {":to": {"S": "DONE"}, ":from": {"S": "QUEUED"}}}
            },
        ]
    )
    batch = {"RequestItems": {table: {"Keys": [key, {"id": second["id"]}], "ConsistentRead": True}}}
    lean_batch = await aws.dynamodb.batch_get_item(**batch)  # type: ignore[arg-type]
    plain_batch = await plain.dynamodb.batch_get_item(**batch)  # type: ignore[arg-type]
    by_id = sorted(lean_batch["Responses"][table], key=lambda item: item["id"]["S"])
    assert by_id == [ITEM | {"state": {"S": "DONE"}}, second]
    assert sorted(plain_batch["Responses"][table], key=lambda item: item["id"]["S"]) == by_id

    # A transaction whose condition fails is cancelled, with the same reasons for both.
    cancelled = []
    for clients in (aws, plain):
        with pytest.raises(clients.dynamodb.exceptions.TransactionCanceledException) as raised:
            await clients.dynamodb.transact_write_items(
                TransactItems=[
                    {"Put": {"TableName": table, "Item": {"id": {"S": "lean-3"}}}},
                    {"Update": {k: v for k, v in update.items() if k != "ReturnValues"}},
                ]
            )
        cancelled.append(_refusal(raised.value))
    assert cancelled[0] == cancelled[1]
    reasons = cancelled[0][2]["CancellationReasons"]
    assert [reason["Code"] for reason in reasons] == ["None", "ConditionalCheckFailed"]

    query = {
        "TableName": table,
        "KeyConditionExpression": "id = :id",
        "ExpressionAttributeValues": {":id": second["id"]},
    }
    lean_query = await aws.dynamodb.query(**query)  # type: ignore[arg-type]
    assert _body(lean_query) == _body(await plain.dynamodb.query(**query))  # type: ignore[arg-type]
    assert lean_query["Items"] == [second]

    await aws.dynamodb.delete_item(TableName=table, Key={"id": second["id"]})
    gone = await plain.dynamodb.get_item(TableName=table, Key={"id": second["id"]})
    assert "Item" not in gone


async def test_sqs_hot_operations_answer_as_aiobotocore(
    aws: AwsClients, plain: AwsClients, resources: Settings
) -> None:
    assert isinstance(aws.sqs, LeanSQS)
    url = await queue_url(plain.sqs, resources.request_queue)
    attributes = {"traceparent": {"DataType": "String", "StringValue": "00-abc-01"}}
    sent = await aws.sqs.send_message_batch(
        QueueUrl=url,
        Entries=[
            {
                "Id": str(i),
                "MessageBody": json.dumps({"meme_id": f"m{i}"}),
                "MessageAttributes": attributes,
            }  # type: ignore[misc]
            for i in range(2)
        ],
    )
    assert sorted(entry["Id"] for entry in sent["Successful"]) == ["0", "1"]
    await aws.sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"meme_id": "m2"}))

    got: list[Any] = []
    for _ in range(10):  # a queue may hand out fewer than asked per receive
        answer = await aws.sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            VisibilityTimeout=0,  # at once visible again, for aiobotocore's receive below
            MessageAttributeNames=["All"],
        )
        got += answer.get("Messages", [])
        if len({m["MessageId"] for m in got}) == 3:
            break
    assert sorted(
        json.loads(m["Body"])["meme_id"] for m in {m["MessageId"]: m for m in got}.values()
    ) == [
        "m0",
        "m1",
        "m2",
    ]
    lean_one = next(m for m in got if m["MessageAttributes"])
    assert lean_one["MessageAttributes"] == attributes

    # aiobotocore receives the same message: the same fields (but a new receipt handle).
    again: dict[str, Any] = {}
    for _ in range(10):
        answer = await plain.sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, MessageAttributeNames=["All"]
        )
        again |= {m["MessageId"]: m for m in answer.get("Messages", [])}
        if lean_one["MessageId"] in again:
            break
    theirs = again[lean_one["MessageId"]]
    assert set(theirs) == set(lean_one)
    assert {k: v for k, v in theirs.items() if k != "ReceiptHandle"} == {
        k: v for k, v in lean_one.items() if k != "ReceiptHandle"
    }

    handles = [
        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(again.values())
    ]
    deleted = await aws.sqs.delete_message_batch(QueueUrl=url, Entries=handles)  # type: ignore[arg-type]
    assert len(deleted["Successful"]) == len(handles)


async def test_a_missing_queue_raises_as_aiobotocore(
    aws: AwsClients, plain: AwsClients, resources: Settings
) -> None:
    url = (await queue_url(plain.sqs, resources.request_queue)).rsplit("/", 1)[0] + "/no-such"
    refusals = []
    for clients in (aws, plain):
        with pytest.raises(ClientError) as raised:
            await clients.sqs.send_message_batch(
                QueueUrl=url, Entries=[{"Id": "0", "MessageBody": "{}"}]
            )
        refusals.append(_refusal(raised.value))
    assert refusals[0] == refusals[1]


S3_UPLOADS: list[dict[str, Any]] = [
    {
        "Key": "o/lean/meme.png",
        "Body": b"\x89PNG" + bytes(range(256)) * 64,
        "ContentType": "image/png",
    },
    {
        "Key": "templates/t/lean~1.gif",
        "Body": b"GIF89a" + b"\x01" * 2048,
        "ContentType": "image/gif",
        "Metadata": {"name": "lean", "width": "640", "layout": '[{"x": 1}]'},
        "IfNoneMatch": "*",
        "CacheControl": "max-age=60",
    },
    {
        "Key": "batches/b 1/request.json",
        "Body": b'{"items": []}',
        "ContentType": "application/json",
    },
]


async def _stored(clients: AwsClients, bucket: str, key: str) -> dict[str, Any]:
    got = await clients.s3.get_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    async with got["Body"] as body:
        data = await body.read()
    return {
        "data": data,
        "type": got.get("ContentType"),
        "metadata": got.get("Metadata"),
        "cache": got.get("CacheControl"),
        "crc32": got.get("ChecksumCRC32"),
        "etag": got["ETag"],
    }


@pytest.mark.parametrize("upload", S3_UPLOADS, ids=lambda upload: str(upload["Key"]))
async def test_s3_put_object_stores_what_aiobotocore_stores(
    aws: AwsClients, plain: AwsClients, resources: Settings, upload: dict[str, Any]
) -> None:
    assert isinstance(aws.s3, LeanS3)
    assert await aws.s3.lean_request({"Bucket": resources.bucket, **upload}) is not None
    bucket = resources.bucket
    stored, answers = [], []
    for clients, prefix in ((aws, "lean/"), (plain, "plain/")):
        params = {**upload, "Bucket": bucket, "Key": prefix + upload["Key"]}
        response = await clients.s3.put_object(**params)
        answers.append({k: response.get(k) for k in ("ETag", "ChecksumCRC32", "VersionId")})
        stored.append(await _stored(plain, bucket, params["Key"]))
    assert answers[0] == answers[1]
    assert answers[0]["ETag"] == stored[0]["etag"]
    assert stored[0] == stored[1]
    assert stored[0]["data"] == upload["Body"]
    assert stored[0]["type"] == upload["ContentType"]
    assert stored[0]["metadata"] == upload.get("Metadata", {})
    assert stored[0]["crc32"] is not None  # the default checksum went with the upload


async def test_s3_put_object_refusals_are_aiobotocores(
    aws: AwsClients, plain: AwsClients, resources: Settings
) -> None:
    upload = S3_UPLOADS[1]
    refusals = []
    for clients in (aws, plain):
        with pytest.raises(ClientError) as raised:
            await clients.s3.put_object(Bucket=f"{resources.bucket}-missing", **upload)
        refusals.append(_refusal(raised.value))
    assert refusals[0] == refusals[1]
    assert refusals[0][1]["Code"] == "NoSuchBucket"

    # A create-only write of a key that exists: refused alike.
    await plain.s3.put_object(Bucket=resources.bucket, **upload)
    refusals = []
    for clients in (aws, plain):
        with pytest.raises(ClientError) as raised:
            await clients.s3.put_object(Bucket=resources.bucket, **upload)
        refusals.append(_refusal(raised.value))
    assert refusals[0] == refusals[1]
    assert refusals[0][1]["Code"] == "PreconditionFailed"

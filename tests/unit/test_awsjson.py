"""memeforge_common.awsjson: the lean transport's request bodies and parsed responses are
botocore's, byte for byte and dict for dict, on the shapes the services send and get
back, and on the ones (blobs) where plain JSON would differ."""

from __future__ import annotations

import json
import re
from typing import Any

import botocore.session
import pytest
from botocore.parsers import create_parser
from botocore.serialize import create_serializer
from memeforge_common.awsjson import WireOperation, blob_members
from memeforge_common.leanclients import LeanDynamoDB, LeanSQS

pytestmark = pytest.mark.unit

_SESSION = botocore.session.get_session()
MODELS = {name: _SESSION.get_service_model(name) for name in ("dynamodb", "sqs")}
QUEUE = "http://127.0.0.1:4566/000000000000/memeforge-requests"
ITEM = {
    "id": {"S": "a" * 32},
    "state": {"S": "DONE"},
    "captions": {"L": [{"S": "top text, ünïcode ✓"}, {"S": 'with "quotes"'}]},
    "state_times": {"M": {"PENDING": {"S": "2026-01-01T00:00:00.000000Z"}}},
    "n": {"N": "3"},
    "tags": {"SS": ["a", "b"]},
    "sizes": {"NS": ["1", "2.5"]},
    "gone": {"NULL": True},
    "flag": {"BOOL": False},
}
UPDATE = {
    "TableName": "memeforge-memes",
    "Key": {"id": {"S": "a" * 32}},
    "UpdateExpression": "SET #state = :to, state_times.#to = :now",
    "ConditionExpression": "#state = :from",
    "ExpressionAttributeNames": {"#state": "state", "#to": "QUEUED"},
    "ExpressionAttributeValues": {
        ":to": {"S": "QUEUED"},
        ":from": {"S": "PENDING"},
        ":now": {"S": "2026-01-01T00:00:00.000000Z"},
    },
    "ReturnValues": "ALL_NEW",
    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
}
REQUESTS: list[tuple[str, str, dict[str, Any]]] = [
    ("dynamodb", "UpdateItem", UPDATE),
    ("dynamodb", "PutItem", {"TableName": "t", "Item": ITEM, "ConditionExpression": "a"}),
    ("dynamodb", "GetItem", {"TableName": "t", "Key": {"id": {"S": "x"}}, "ConsistentRead": True}),
    (
        "dynamodb",
        "BatchGetItem",
        {"RequestItems": {"t": {"Keys": [{"id": {"S": "x"}}, {"id": {"S": "y"}}]}}},
    ),
    (
        "dynamodb",
        "Query",
        {
            "TableName": "t",
            "IndexName": "by-owner",
            "KeyConditionExpression": "#o = :o",
            "ExpressionAttributeNames": {"#o": "owner"},
            "ExpressionAttributeValues": {":o": {"S": "tenant"}},
            "Limit": 25,
            "ScanIndexForward": False,
            "ExclusiveStartKey": {"id": {"S": "x"}, "owner": {"S": "tenant"}},
        },
    ),
    (
        "dynamodb",
        "TransactWriteItems",
        {
            "TransactItems": [
                {"Put": {"TableName": "t", "Item": ITEM}},
                {"Update": {k: v for k, v in UPDATE.items() if k != "ReturnValues"}},
                {
                    "ConditionCheck": {
                        "TableName": "t",
                        "Key": {"id": {"S": "x"}},
                        "ConditionExpression": "a",
                    }
                },
                {"Delete": {"TableName": "t", "Key": {"id": {"S": "y"}}}},
            ],
            "ClientRequestToken": "token-1",
        },
    ),
    ("dynamodb", "DeleteItem", {"TableName": "t", "Key": {"id": {"S": "x"}}}),
    # Blobs: bytes, and a str where a blob goes (botocore base64-encodes both).
    (
        "dynamodb",
        "PutItem",
        {"TableName": "t", "Item": {"id": {"S": "x"}, "raw": {"B": b"\x00\xff"}}},
    ),
    ("dynamodb", "PutItem", {"TableName": "t", "Item": {"raw": {"BS": [b"a", b"b"]}}}),
    ("dynamodb", "PutItem", {"TableName": "t", "Item": {"raw": {"B": "text"}}}),
    (
        "sqs",
        "SendMessageBatch",
        {
            "QueueUrl": QUEUE,
            "Entries": [
                {
                    "Id": str(i),
                    "MessageBody": json.dumps({"v": 1, "meme_id": f"{i:032x}"}),
                    "DelaySeconds": i,
                    "MessageAttributes": {
                        "traceparent": {"DataType": "String", "StringValue": f"00-{i:032x}-01"}
                    },
                }
                for i in range(3)
            ],
        },
    ),
    ("sqs", "SendMessage", {"QueueUrl": QUEUE, "MessageBody": "ünïcode ✓"}),
    (
        "sqs",
        "SendMessage",
        {
            "QueueUrl": QUEUE,
            "MessageBody": "b",
            "MessageAttributes": {"bin": {"DataType": "Binary", "BinaryValue": b"\x01"}},
        },
    ),
    (
        "sqs",
        "ReceiveMessage",
        {
            "QueueUrl": QUEUE,
            "MaxNumberOfMessages": 10,
            "WaitTimeSeconds": 20,
            "VisibilityTimeout": 60,
            "MessageAttributeNames": ["All"],
            "MessageSystemAttributeNames": ["ApproximateReceiveCount"],
        },
    ),
    (
        "sqs",
        "DeleteMessageBatch",
        {"QueueUrl": QUEUE, "Entries": [{"Id": "0", "ReceiptHandle": "r" * 300}]},
    ),
    ("sqs", "DeleteMessage", {"QueueUrl": QUEUE, "ReceiptHandle": "r"}),
    (
        "sqs",
        "ChangeMessageVisibilityBatch",
        {"QueueUrl": QUEUE, "Entries": [{"Id": "0", "ReceiptHandle": "r", "VisibilityTimeout": 0}]},
    ),
]


def wire(service: str, operation: str) -> WireOperation:
    return WireOperation(MODELS[service].operation_model(operation))


@pytest.mark.parametrize(("service", "operation", "params"), REQUESTS)
def test_request_body_and_headers_are_botocores(
    service: str, operation: str, params: dict[str, Any]
) -> None:
    lean = wire(service, operation)
    theirs = create_serializer("json", include_validation=False).serialize_to_request(
        params, lean.model
    )
    assert lean.encode(dict(params)) == theirs["body"]
    assert lean.headers == dict(theirs["headers"])


def test_a_missing_idempotency_token_is_filled_in_once_per_call() -> None:
    lean = wire("dynamodb", "TransactWriteItems")
    given = {"TransactItems": []}
    filled = lean.with_tokens(given)
    assert re.fullmatch(r"[0-9a-f-]{36}", filled["ClientRequestToken"])
    assert given == {"TransactItems": []}  # the caller's dict is left alone
    assert lean.with_tokens({"ClientRequestToken": "mine"}) == {"ClientRequestToken": "mine"}


ATTRIBUTES_B64 = {"raw": {"B": "AP8="}, "set": {"BS": ["YQ==", "Yg=="]}, "id": {"S": "x"}}
MESSAGE = {
    "MessageId": "m-1",
    "ReceiptHandle": "r" * 200,
    "MD5OfBody": "0" * 32,
    "Body": json.dumps({"v": 1, "meme_id": "a" * 32}),
    "Attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1700000000000"},
    "MD5OfMessageAttributes": "1" * 32,
    "MessageAttributes": {"traceparent": {"StringValue": "00-1-01", "DataType": "String"}},
}
RESPONSES: list[tuple[str, str, Any]] = [
    ("dynamodb", "UpdateItem", {"Attributes": ITEM}),
    ("dynamodb", "UpdateItem", {}),
    (
        "dynamodb",
        "GetItem",
        {"Item": ITEM, "ConsumedCapacity": {"TableName": "t", "CapacityUnits": 0.5}},
    ),
    ("dynamodb", "GetItem", {}),
    ("dynamodb", "PutItem", {}),
    ("dynamodb", "TransactWriteItems", {}),
    ("dynamodb", "DeleteItem", {"Attributes": ITEM}),
    (
        "dynamodb",
        "BatchGetItem",
        {
            "Responses": {"t": [ITEM, ITEM]},
            "UnprocessedKeys": {"t": {"Keys": [{"id": {"S": "z"}}]}},
        },
    ),
    (
        "dynamodb",
        "Query",
        {"Items": [ITEM], "Count": 1, "ScannedCount": 3, "LastEvaluatedKey": {"id": {"S": "x"}}},
    ),
    ("dynamodb", "GetItem", {"Item": ATTRIBUTES_B64}),  # blobs: base64 in, bytes out
    ("dynamodb", "Query", {"Items": [ATTRIBUTES_B64], "Count": 1}),
    # Unmodeled and null members: botocore keeps neither.
    ("dynamodb", "GetItem", {"Item": ITEM, "Extra": 1, "ConsumedCapacity": None}),
    ("sqs", "ReceiveMessage", {"Messages": [MESSAGE, MESSAGE]}),
    ("sqs", "ReceiveMessage", {}),
    (
        "sqs",
        "ReceiveMessage",
        {
            "Messages": [
                {
                    **MESSAGE,
                    "MessageAttributes": {"b": {"BinaryValue": "AQ==", "DataType": "Binary"}},
                }
            ]
        },
    ),
    (
        "sqs",
        "SendMessageBatch",
        {
            "Successful": [{"Id": "0", "MessageId": "m", "MD5OfMessageBody": "0" * 32}],
            "Failed": [{"Id": "1", "SenderFault": True, "Code": "X", "Message": "no"}],
        },
    ),
    ("sqs", "SendMessage", {"MessageId": "m", "MD5OfMessageBody": "0" * 32}),
    ("sqs", "DeleteMessageBatch", {"Successful": [{"Id": "0"}], "Failed": []}),
    ("sqs", "DeleteMessage", None),  # an empty body
]
HEADERS = {"x-amzn-requestid": "req-1", "content-type": "application/x-amz-json-1.0"}


def botocore_parse(lean: WireOperation, status: int, body: bytes, headers: dict[str, str]) -> Any:
    response = {"status_code": status, "headers": headers, "body": body, "context": {}}
    return create_parser("json").parse(response, lean.model.output_shape)


@pytest.mark.parametrize(("service", "operation", "data"), RESPONSES)
def test_parsed_response_is_botocores(service: str, operation: str, data: Any) -> None:
    lean = wire(service, operation)
    body = b"" if data is None else json.dumps(data).encode()
    for headers in (HEADERS, {"content-type": "application/x-amz-json-1.0"}):
        assert lean.decode(200, dict(headers), body) == botocore_parse(lean, 200, body, headers)


def test_blob_responses_come_back_as_bytes() -> None:
    lean = wire("dynamodb", "GetItem")
    parsed = lean.decode(200, dict(HEADERS), json.dumps({"Item": ATTRIBUTES_B64}).encode())
    assert parsed["Item"]["raw"] == {"B": b"\x00\xff"}


def test_the_hot_operations_have_no_timestamps_nor_renamed_members() -> None:
    """What makes plain JSON exact for them: only blobs differ, and those are caught by name."""
    for service, kind in (("dynamodb", LeanDynamoDB), ("sqs", LeanSQS)):
        for operation in kind.OPERATIONS:
            model = MODELS[service].operation_model(operation)
            for shape in (model.input_shape, model.output_shape):
                blobs, plain = blob_members(shape)
                assert plain, (operation, shape)
                assert blobs <= {"B", "BS", "BinaryValue", "BinaryListValues"}


ERRORS: list[tuple[str, str, dict[str, str], dict[str, Any]]] = [
    (
        "dynamodb",
        "UpdateItem",
        {},
        {
            "__type": "com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException",
            "message": "The conditional request failed",
            "Item": ITEM,
        },
    ),
    (
        "dynamodb",
        "TransactWriteItems",
        {},
        {
            "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
            "Message": "Transaction cancelled, please refer cancellation reasons for specific "
            "reasons [ConditionalCheckFailed, None]",
            "CancellationReasons": [
                {"Code": "ConditionalCheckFailed", "Message": "The conditional request failed"},
                {"Code": "None"},
            ],
        },
    ),
    (
        "sqs",
        "SendMessageBatch",
        {"x-amzn-query-error": "AWS.SimpleQueueService.NonExistentQueue;Sender"},
        {
            "__type": "com.amazonaws.sqs#QueueDoesNotExist",
            "message": "The specified queue does not exist.",
        },
    ),
]


@pytest.mark.parametrize(("service", "operation", "extra", "data"), ERRORS)
def test_errors_are_parsed_as_aiobotocores_endpoint_does(
    service: str, operation: str, extra: dict[str, str], data: dict[str, Any]
) -> None:
    lean = wire(service, operation)
    headers = HEADERS | extra
    body = json.dumps(data).encode()
    expected = botocore_parse(lean, 400, body, headers)
    shape = lean.model.service_model.shape_for_error_code(expected["Error"]["Code"])
    if shape is not None:  # the modeled fields aiobotocore's endpoint adds
        response = {"status_code": 400, "headers": headers, "body": body, "context": {}}
        expected.update(create_parser("json").parse(response, shape))
    assert lean.decode(400, dict(headers), body) == expected

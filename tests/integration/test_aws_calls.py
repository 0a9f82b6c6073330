"""memeforge_aws_requests_total: every request a client sends is counted, by AWS service
and operation, and empty long polls apart (against the emulator over HTTP)."""

from __future__ import annotations

import pytest
from memeforge_common.aws import AwsClients
from memeforge_common.queues import queue_url
from memeforge_common.settings import Settings
from prometheus_client import REGISTRY

pytestmark = pytest.mark.integration


def _requests(service: str, operation: str) -> float:
    labels = {"service": service, "operation": operation}
    return REGISTRY.get_sample_value("memeforge_aws_requests_total", labels) or 0.0


def _empty_receives() -> float:
    return REGISTRY.get_sample_value("memeforge_aws_empty_receives_total") or 0.0


async def test_each_request_is_counted_by_service_and_operation(
    aws: AwsClients, resources: Settings
) -> None:
    """README "memeforge_aws_requests_total{service, operation}": every request counted."""
    before = {
        ("dynamodb", "GetItem"): _requests("dynamodb", "GetItem"),
        ("s3", "PutObject"): _requests("s3", "PutObject"),
        ("s3", "HeadObject"): _requests("s3", "HeadObject"),
    }
    for i in range(3):
        await aws.dynamodb.get_item(TableName=resources.table, Key={"id": {"S": f"none-{i}"}})
    await aws.s3.put_object(Bucket=resources.bucket, Key="counted", Body=b"x")
    with pytest.raises(aws.s3.exceptions.ClientError):  # a 404 was still a request
        await aws.s3.head_object(Bucket=resources.bucket, Key="absent")
    after = {key: _requests(*key) for key in before}
    assert {key: after[key] - before[key] for key in before} == {
        ("dynamodb", "GetItem"): 3,
        ("s3", "PutObject"): 1,
        ("s3", "HeadObject"): 1,
    }


async def test_empty_receives_are_counted_apart(aws: AwsClients, resources: Settings) -> None:
    url = await queue_url(aws.sqs, resources.request_queue)
    receives, empty = _requests("sqs", "ReceiveMessage"), _empty_receives()
    await aws.sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0)  # nothing there
    await aws.sqs.send_message(QueueUrl=url, MessageBody="{}")
    got = await aws.sqs.receive_message(QueueUrl=url, WaitTimeSeconds=5)
    assert len(got.get("Messages", [])) == 1
    assert _requests("sqs", "ReceiveMessage") - receives == 2
    assert _empty_receives() - empty == 1

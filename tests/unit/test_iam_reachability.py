"""The static scanner behind the IAM policy check (devenv.iam.reachability)."""

from __future__ import annotations

import ast

import pytest

from devenv.iam.reachability import Unit, iam_actions, reachable, scan_unit

pytestmark = pytest.mark.unit


def test_scanner_finds_calls_waiters_presigns_and_library_methods() -> None:
    api = reachable(("memeforge_api",))
    # generate_presigned_url("get_object") and head_object both need s3:GetObject; the
    # api reaches MemeStore.get/create through `store.get`/`store.create`.
    assert {"s3:GetObject", "dynamodb:GetItem", "dynamodb:PutItem"} <= set(api.calls)
    bootstrap = reachable(("memeforge_common.bootstrap",))
    assert "dynamodb:DescribeTable" in bootstrap.calls  # get_waiter("table_exists")
    # `err.response.get(...)` in bootstrap must not count as MemeStore.get.
    # Its only GetItem is KeyStore.get (importing the first API key).
    assert bootstrap.calls["dynamodb:GetItem"]
    assert all(
        s.startswith("memeforge_common.apikeys:") for s in bootstrap.calls["dynamodb:GetItem"]
    )


def test_scanner_flags_an_unlisted_call() -> None:
    """A call the policy does not grant (or a typo'd action) shows up as a difference."""
    source = "async def f(aws):\n    await aws.sqs.purge_queue(QueueUrl='x')\n"
    unit = Unit("probe", "f", None, ast.parse(source).body[0])
    scan_unit(unit)
    assert {(s, op) for s, op, _ in unit.boto_calls} == {("sqs", "PurgeQueue")}


def test_a_presigned_post_form_counts_as_put_object() -> None:
    """The client's form POST is authorised by the signer's policy: s3:PutObject."""
    source = "async def f(s3):\n    await s3.generate_presigned_post(Bucket='b', Key='k')\n"
    unit = Unit("probe", "f", None, ast.parse(source).body[0])
    scan_unit(unit)
    assert {(s, op) for s, op, _ in unit.boto_calls} == {("s3", "PutObject")}
    api = reachable(("memeforge_api",))
    assert any(site.startswith("memeforge_common.uploads:") for site in api.calls["s3:PutObject"])


def test_a_transaction_needs_the_action_of_each_write_it_holds() -> None:
    """AWS authorises TransactWriteItems action by action: Put → PutItem, and so on."""
    source = (
        "async def f(ddb):\n"
        "    await ddb.transact_write_items(TransactItems=[\n"
        "        {'Put': {'TableName': 't', 'Item': {}}},\n"
        "        {'Update': {'TableName': 't', 'Key': {}}},\n"
        "    ])\n"
    )
    unit = Unit("probe", "f", None, ast.parse(source).body[0])
    scan_unit(unit)
    ops = {(s, op) for s, op, _ in unit.boto_calls}
    assert ops == {
        ("dynamodb", "TransactWriteItems"),
        ("dynamodb", "PutItem"),
        ("dynamodb", "UpdateItem"),
    }
    assert iam_actions("dynamodb", "TransactWriteItems") == ()

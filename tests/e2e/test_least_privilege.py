"""Least privilege, enforced: every service runs as its own IAM user, with exactly its policy.

moto (``devenv.iam.moto_iam``) authenticates and authorises every request once the bootstrap
and the dev IAM users exist (``devenv.iam.users``): the emulator's dummy keys are refused,
and each service signs with the keys of ``memeforge-dev-<service>``, whose only policy is
``iam/<service>-policy.json`` (``envsubst``'d, otherwise verbatim). The whole pipeline suite
(tests/e2e/test_pipeline.py) and a batch (tests/e2e/test_batches.py, smaller) run against
that stack; then one call per service outside its policy must be denied, next to a call
inside it that must not be. moto backend only: LocalStack community does not enforce IAM.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from devenv.iam.users import AccessKey, client, static_keys, user_name
from devenv.run.backends.moto import start_moto
from devenv.run.stack import Stack, bootstrap
from tests.e2e import test_batches as batches
from tests.e2e import test_pipeline as pipeline
from tests.support.stack import running_stack

pytestmark = pytest.mark.e2e

ACCOUNT = "123456789012"  # moto's default account
QUEUE_URL = "{endpoint}/" + ACCOUNT + "/{name}"
DENIED = {"AccessDenied", "AccessDeniedException"}
UNKNOWN_KEY = {"InvalidClientTokenId", "UnrecognizedClientException", "InvalidAccessKeyId"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Overrides tests/e2e/conftest.py's ``stack`` for this module (and the pipeline tests
    collected into it): moto enforcing IAM, one identity per service."""
    workdir = tmp_path_factory.mktemp("stack-least-privilege")
    with running_stack(
        workdir, emulator=start_moto(workdir, aws_iam=True), prepare=static_keys
    ) as running:
        yield running


# The whole pipeline suite, collected again here so that it runs against this module's stack
# (pytest resolves the ``stack`` fixture from the module a test is collected in).
for _name, _test in vars(pipeline).items():
    if _name.startswith("test_") and callable(_test):
        globals()[_name] = _test


async def test_a_batch_fans_out_renders_and_is_archived_within_the_policies(
    stack: Stack, api: httpx.AsyncClient
) -> None:
    """The batch path (fan-out, the ending transaction, the multipart ZIP, the mail with
    its link presigned by the notifier) as each service's own identity: 30 items, enough
    for several fan-out rounds and archive reads."""
    recipient = "batches@example.com"
    batch_id, archive = await batches.run_batch(api, 30, notify_email=recipient)
    await batches.archive_mailed(stack, api, batch_id, recipient, archive)


def as_service(stack: Stack, service: str, aws_service: str) -> Any:
    env = stack.service_env[service]
    key = AccessKey(env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"])
    return client(stack.emulator, aws_service, key)


def queue_url(name: str) -> Callable[[Stack], str]:
    """A queue's URL on the stack's emulator (known once the stack runs)."""
    return lambda stack: QUEUE_URL.format(
        endpoint=stack.emulator.env["AWS_ENDPOINT_URL"], name=name
    )


@dataclass(frozen=True)
class Attempt:
    """One AWS call made with a service's own keys; a callable parameter is given the stack."""

    service: str
    what: str
    aws_service: str
    operation: str
    params: dict[str, Any]

    def __call__(self, stack: Stack) -> object:
        params = {k: v(stack) if callable(v) else v for k, v in self.params.items()}
        return getattr(as_service(stack, self.service, self.aws_service), self.operation)(**params)

    def param(self) -> Any:
        return pytest.param(self, id=f"{self.service}: {self.what}")


def error_code(call: Callable[[], object]) -> str:
    with pytest.raises(ClientError) as caught:
        call()
    return str(caught.value.response.get("Error", {}).get("Code"))


def not_found(call: Callable[[], object]) -> bool:
    """Allowed, and the object does not exist (404, not 403)."""
    try:
        call()
    except ClientError as err:
        return err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404
    return False


TABLE = "memeforge-memes"
FORGED_EMAIL = {
    "Source": "memeforge@example.com",
    "Destinations": ["someone@example.com"],
    "RawMessage": {"Data": b"Subject: forged\r\n\r\nx"},
}

# Each outside the service's policy.
OUT_OF_POLICY = [
    Attempt(
        "renderer",
        "SendMessage to the request queue",
        "sqs",
        "send_message",
        {"QueueUrl": queue_url("memeforge-requests"), "MessageBody": "{}"},
    ),
    Attempt(
        "api",
        "PutObject under memes/ (only the renderer writes outputs)",
        "s3",
        "put_object",
        {"Bucket": "memeforge", "Key": "memes/forged.jpg", "Body": b"x"},
    ),
    Attempt(
        "consumer",
        "PutObject under memes/",
        "s3",
        "put_object",
        {"Bucket": "memeforge", "Key": "memes/forged.jpg", "Body": b"x"},
    ),
    Attempt(
        "renderer",
        "GetItem on another table (DynamoDB resources are scoped too)",
        "dynamodb",
        "get_item",
        {"TableName": "someone-elses-table", "Key": {"id": {"S": "x"}}},
    ),
    Attempt(
        "consumer",
        "Query the table itself, not the live-items index",
        "dynamodb",
        "query",
        {
            "TableName": TABLE,
            "KeyConditionExpression": "id = :id",
            "ExpressionAttributeValues": {":id": {"S": "x"}},
        },
    ),
    Attempt(
        "api",
        "PutObject of a batch ZIP (only the consumer builds archives)",
        "s3",
        "put_object",
        {"Bucket": "memeforge", "Key": "memes/t/batches/forged.zip", "Body": b"x"},
    ),
    Attempt(
        "consumer",
        "PutObject of a batch request (only the api stores them)",
        "s3",
        "put_object",
        {"Bucket": "memeforge", "Key": "memes/t/batches/forged.request.json", "Body": b"x"},
    ),
    Attempt(
        "renderer",
        "Query the batch-items index",
        "dynamodb",
        "query",
        {
            "TableName": TABLE,
            "IndexName": "batch-items",
            "KeyConditionExpression": "batch_id = :b",
            "ExpressionAttributeValues": {":b": {"S": "x"}},
        },
    ),
    Attempt(
        "api",
        "Scan the table (lists go through an index)",
        "dynamodb",
        "scan",
        {"TableName": TABLE, "Limit": 1},
    ),
    Attempt(
        "renderer",
        "SendRawEmail (only the notifier sends mail)",
        "ses",
        "send_raw_email",
        FORGED_EMAIL,
    ),
    Attempt(
        "notifier",
        "PutItem (the notifier only reads memes and appends attempts)",
        "dynamodb",
        "put_item",
        {"TableName": TABLE, "Item": {"id": {"S": "forged"}}},
    ),
    Attempt(
        "api",
        "DeleteQueue (only the bootstrap manages queues)",
        "sqs",
        "delete_queue",
        {"QueueUrl": queue_url("memeforge-requests")},
    ),
]

# Each inside the service's policy: it must not be denied.
IN_POLICY = [
    Attempt(
        "notifier",
        "SendRawEmail from the verified sender",
        "ses",
        "send_raw_email",
        FORGED_EMAIL | {"RawMessage": {"Data": b"Subject: allowed\r\n\r\nx"}},
    ),
    Attempt(
        "consumer",
        "Query the notify-due index",
        "dynamodb",
        "query",
        {
            "TableName": TABLE,
            "IndexName": "notify-due",
            "KeyConditionExpression": "notify_due = :e",
            "ExpressionAttributeValues": {":e": {"S": "meme.done"}},
            "Limit": 1,
        },
    ),
    Attempt(
        "renderer",
        "GetQueueUrl of the render queue",
        "sqs",
        "get_queue_url",
        {"QueueName": "memeforge-renders"},
    ),
    Attempt(
        "api",
        "GetItem of a meme",
        "dynamodb",
        "get_item",
        {"TableName": TABLE, "Key": {"id": {"S": "no-such-meme"}}},
    ),
    Attempt(
        "consumer",
        "Query the live-items index",
        "dynamodb",
        "query",
        {
            "TableName": TABLE,
            "IndexName": "live-items",
            "KeyConditionExpression": "live_state = :s",
            "ExpressionAttributeValues": {":s": {"S": "PENDING"}},
            "Limit": 1,
        },
    ),
    Attempt(
        "api",
        "Query the changes index (the watcher's change feed)",
        "dynamodb",
        "query",
        {
            "TableName": TABLE,
            "IndexName": "changes",
            "KeyConditionExpression": "feed = :f",
            "ExpressionAttributeValues": {":f": {"S": "2026-01-01T00:00"}},
            "Limit": 1,
        },
    ),
]


@pytest.mark.parametrize("attempt", [a.param() for a in OUT_OF_POLICY])
def test_a_call_outside_the_policy_is_denied(stack: Stack, attempt: Attempt) -> None:
    """README "test_least_privilege.py runs the pipeline with moto enforcing IAM"."""
    assert error_code(lambda: attempt(stack)) in DENIED


@pytest.mark.parametrize("attempt", [a.param() for a in IN_POLICY])
def test_a_call_inside_the_policy_is_allowed(stack: Stack, attempt: Attempt) -> None:
    attempt(stack)


def test_missing_objects_are_404_not_403(stack: Stack) -> None:
    """docs/credentials.md "The policies": s3:ListBucket so missing is 404.
    s3:ListBucket beside s3:GetObject: the code relies on NotFound for missing templates."""
    for service in ("api", "consumer", "renderer"):
        s3 = as_service(stack, service, "s3")
        assert not_found(lambda s3=s3: s3.head_object(Bucket="memeforge", Key="templates/nope"))
    api = as_service(stack, "api", "s3")
    assert not_found(lambda: api.head_object(Bucket="memeforge", Key="memes/nope.jpg"))


def http_status(url: str, headers: dict[str, str] | None = None) -> int:
    try:
        request = urllib.request.Request(url, headers=headers or {})
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return err.code


def test_presigned_urls_are_verified(stack: Stack) -> None:
    """docs/credentials.md "What the emulator enforces": presigned URLs verified.
    S3 checks a presigned URL's signature, expiry and the signer's policy."""
    params = {"Bucket": "memeforge", "Key": "templates/public/sunset-hills"}
    api = as_service(stack, "api", "s3")
    url = api.generate_presigned_url("get_object", Params=params, ExpiresIn=60)
    assert http_status(url) == 200
    assert http_status(url.replace("sunset-hills", "ocean-waves")) == 403  # signed for another
    renderer = as_service(stack, "renderer", "s3")  # may read templates, not presign memes/
    rendered = {"Bucket": "memeforge", "Key": "memes/anything.jpg"}
    assert http_status(renderer.generate_presigned_url("get_object", Params=rendered)) == 403
    bare = f"{stack.emulator.env['AWS_ENDPOINT_URL']}/memeforge/templates/public/sunset-hills"
    assert http_status(bare) == 403  # anonymous: the bucket is private
    # Another Authorization scheme (a client's API key sent along): 400, as S3 answers.
    bearer = {"Authorization": "Bearer mf_key_secret"}
    assert http_status(url, bearer) == 400  # two auth mechanisms
    assert http_status(bare, bearer) == 400  # not SigV4


def test_presigned_post_forms_are_verified(stack: Stack) -> None:
    """docs/credentials.md "What the emulator enforces": presigned POST forms verified.
    The signature covers the policy, every condition must hold, and the signer's own policy
    must allow s3:PutObject on the form's object (the api's: incoming/*)."""
    key = "incoming/acme/" + "a" * 32
    conditions: list[Any] = [
        {"key": key},
        ["content-length-range", 1, 1000],
        ["starts-with", "$Content-Type", "image/"],
    ]

    def form(service: str) -> dict[str, Any]:
        s3 = as_service(stack, service, "s3")
        post: dict[str, Any] = s3.generate_presigned_post(
            "memeforge", key, Conditions=conditions, ExpiresIn=60
        )
        return post

    def send(post: dict[str, Any], data: bytes = b"png", **fields: str) -> int:
        sent = {"Content-Type": "image/png"} | post["fields"] | fields
        files = {"file": ("upload", data, sent["Content-Type"])}
        return httpx.post(post["url"], data=sent, files=files, timeout=10).status_code

    api = form("api")
    policy = json.loads(base64.b64decode(api["fields"]["policy"]))
    policy["conditions"][1] = ["content-length-range", 1, 10**9]
    widened = base64.b64encode(json.dumps(policy).encode()).decode()
    assert send(api, b"0" * 2000, policy=widened) == 403  # the signature covers the policy
    assert send(api, b"0" * 2000) == 403  # over the range
    assert send(api, **{"Content-Type": "text/html"}) == 403
    assert send(api, key="incoming/acme/" + "b" * 32) == 403  # another key than signed
    assert send(form("renderer")) == 403  # a signer whose policy has no incoming/*
    assert send({"url": api["url"], "fields": {"key": key}}) == 403  # anonymous
    assert send(api) == 204


def test_the_bootstrap_runs_under_its_own_policy(stack: Stack) -> None:
    """docs/credentials.md: the bootstrap has its own policy.
    iam/bootstrap-policy.json is enough for the (idempotent) bootstrap to run again."""
    bootstrap(stack.service_env["bootstrap"])


def test_each_service_signs_as_its_own_user(stack: Stack) -> None:
    """README "one IAM user per service"."""
    for service in ("api", "consumer", "renderer"):
        identity = as_service(stack, service, "sts").get_caller_identity()
        assert identity["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/{user_name(service)}"


def test_unknown_keys_and_bad_signatures_are_refused(stack: Stack) -> None:
    """docs/credentials.md "What the emulator enforces": bad keys are refused."""
    dummy = client(stack.emulator, "sqs")  # the emulator's dummy keys, fine before enforcement
    code = error_code(lambda: dummy.get_queue_url(QueueName="memeforge-requests"))
    assert code in UNKNOWN_KEY
    env = stack.service_env["renderer"]
    forged = AccessKey(env["AWS_ACCESS_KEY_ID"], "not-the-secret")
    sqs = client(stack.emulator, "sqs", forged)
    code = error_code(lambda: sqs.get_queue_url(QueueName="memeforge-renders"))
    assert code in {"SignatureDoesNotMatch", "InvalidSignatureException"}

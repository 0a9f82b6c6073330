"""moto's server, evaluating IAM the way AWS does for the calls memeforge makes.

``python -m devenv.iam.moto_iam --port N`` is ``devenv.run.backends.moto_server`` (DynamoDB
serialized) plus the corrections below. moto enforces nothing until authentication is
switched on (its ``INITIAL_NO_AUTH_ACTION_COUNT``; ``devenv.iam.users.enforce_iam`` arms it
through moto's own ``/moto-api/reset-auth`` once the bootstrap and the dev IAM users exist).
From then on every request must be signed by a known access key and be allowed by that
user's policies.

Stock moto 5.2 checks SigV4 signatures, unknown keys and S3 object/bucket ARNs correctly,
but differs from AWS where our policies would notice:

- DynamoDB requests are authorised against Resource ``*`` (moto never names the table),
  so a policy scoped to ``table/memeforge-memes`` is denied. We name the table (and
  ``/index/<name>`` for a Query on an index), as AWS does.
- SQS ``GetQueueUrl`` is authorised against ``*`` (moto looks for a ``QueueUrl`` it does
  not have). We name the queue from ``QueueName``. Other SQS calls already use the ARN.
- moto takes the API operation as the IAM action: ``SendMessageBatch``,
  ``DeleteMessageBatch`` and ``ChangeMessageVisibilityBatch`` are authorised by
  ``sqs:SendMessage`` etc. in AWS, and here.
- ``TransactWriteItems`` is authorised as that one action on ``*``. AWS authorises each
  action it holds (``Put`` by ``dynamodb:PutItem``, ``Update`` by ``UpdateItem``...) on its
  table; so do we.
- IAM user-level calls (``CreateAccessKey`` …) are authorised against ``*``; we name the user.
- SES calls are authorised against ``*``. We name the identity (``identity/<address>``) from
  ``Source`` (SendRawEmail, SendEmail) or ``EmailAddress`` (VerifyEmailIdentity), as AWS
  does for sending.
- Inactive access keys still authenticate in moto; AWS refuses them. So do we.
- Presigned S3 URLs crash moto's checker (no ``Authorization`` header: HTTP 500). We verify
  them as S3 does: known active key, signature over the query string, not expired, and the
  signer's policy allows the action on the object.
- Presigned POST forms (browser-based uploads) are anonymous to moto (AccessDenied). We
  verify them as S3 does: known active key, the SigV4 signature over the form's policy, the
  policy not expired and every condition met (fields, key, Content-Type, length range),
  and the signer's policy allows s3:PutObject on the form's object.
- An S3 request whose ``Authorization`` is not SigV4 (``Bearer …``), or a presigned URL
  sent with one too, also crashes it (IndexError reading the credential scope: 500). S3
  answers ``400 InvalidArgument``; so do we.
- Auth failures of JSON-protocol services (DynamoDB, SQS) come back as XML, so botocore sees
  error code "403". We answer JSON with AWS's codes (``AccessDeniedException``,
  ``UnrecognizedClientException``, ``InvalidSignatureException``).

With these, the repository's policy documents are used verbatim (only ``envsubst``'d):
nothing is widened for the emulator. Policy Conditions, resource-based policies (bucket or
queue policies) and permission boundaries are still not evaluated: see docs/credentials.md.
"""

from __future__ import annotations

import base64
import datetime
import functools
import hashlib
import hmac
import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

from botocore.auth import S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from moto import settings as moto_settings
from moto.core.authorization import ActionAuthenticatorMixin
from moto.core.exceptions import JsonRESTError
from moto.dynamodb.responses import DynamoHandler
from moto.iam import access_control
from moto.iam.models import iam_backends
from moto.iam.responses import IamResponse
from moto.s3.exceptions import InvalidArgumentError, S3AccessDeniedError
from moto.ses.responses import EmailResponse
from moto.sqs.responses import SQSResponse
from moto.utilities.utils import get_partition

# API operations whose IAM action has another name (moto uses the operation's name).
IAM_ACTION_OF = {
    "sqs:SendMessageBatch": "sqs:SendMessage",
    "sqs:DeleteMessageBatch": "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
}

_installed = False


def install() -> None:
    """Apply the corrections (idempotent). Call before the server handles a request."""
    global _installed
    if _installed:
        return
    _installed = True
    DynamoHandler._determine_resource = _dynamodb_resource  # type: ignore[attr-defined]
    SQSResponse._determine_resource = _sqs_resource  # type: ignore[method-assign]
    IamResponse._determine_resource = _iam_resource  # type: ignore[method-assign]
    EmailResponse._determine_resource = _ses_resource  # type: ignore[attr-defined]
    access_control.IAMRequest = _IAMRequest  # type: ignore[misc]
    access_control.create_access_key = _create_access_key
    ActionAuthenticatorMixin._authenticate_and_authorize_action = _authenticate  # type: ignore[method-assign]


# --- resources -------------------------------------------------------------------------------
def _arn(response: Any, service: str, resource: str) -> str:
    partition = get_partition(response.region)
    region = response.region if service != "iam" else ""  # IAM ARNs name no region
    return f"arn:{partition}:{service}:{region}:{response.current_account}:{resource}"


def _dynamodb_resource(self: DynamoHandler) -> str:
    body = self.body if isinstance(self.body, dict) else {}
    tables = {t for _, t in _transact_actions(body)}
    batched = body.get("RequestItems")
    if isinstance(batched, dict):  # BatchGetItem names its tables as the request's keys
        tables |= set(batched)
    table = tables.pop() if len(tables) == 1 else body.get("TableName")
    if not isinstance(table, str) or not table:
        return "*"  # ListTables, a batch over several tables ...: not used by the services
    arn = table if table.startswith("arn:") else _arn(self, "dynamodb", f"table/{table}")
    index = body.get("IndexName")
    return f"{arn}/index/{index}" if isinstance(index, str) and index else arn


# A TransactWriteItems action's key → the IAM action that authorises it.
TRANSACT_ACTIONS = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
}


def _transact_actions(body: dict[str, Any]) -> list[tuple[str, str]]:
    """(IAM action, table) of each action of a TransactWriteItems body."""
    found = []
    for entry in body.get("TransactItems", []):
        for kind, action in entry.items() if isinstance(entry, dict) else ():
            if kind in TRANSACT_ACTIONS and isinstance(action, dict):
                found.append((TRANSACT_ACTIONS[kind], str(action.get("TableName", ""))))
    return found


_sqs_resource_stock = SQSResponse._determine_resource


def _sqs_resource(self: SQSResponse) -> str:
    resource = _sqs_resource_stock(self)
    if resource != "*":
        return resource
    name = self._get_param("QueueName") or self._get_queue_name()
    return _arn(self, "sqs", name) if isinstance(name, str) and name else "*"


_iam_resource_stock = IamResponse._determine_resource


def _iam_resource(self: IamResponse) -> str:
    resource = _iam_resource_stock(self)
    user = self._get_param("UserName")
    if resource == "*" and isinstance(user, str) and user:
        return _arn(self, "iam", f"user/{user}")
    return resource


def _ses_resource(self: EmailResponse) -> str:
    identity = self._get_param("Source") or self._get_param("EmailAddress")
    if not isinstance(identity, str) or not identity:
        return "*"
    address = identity.rpartition("<")[2].rstrip(">")  # "Name <a@example.com>"
    return _arn(self, "ses", f"identity/{address}")


# --- actions, keys, JSON errors --------------------------------------------------------------
_JSON_ERRORS = {
    "access_denied": "AccessDeniedException",
    "invalid_key": "UnrecognizedClientException",
    "signature": "InvalidSignatureException",
}


class _IAMRequest(access_control.IAMRequest):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._action = IAM_ACTION_OF.get(self._action, self._action)

    def check_action_permitted(self, resource: str) -> None:
        if self._action != "dynamodb:TransactWriteItems":
            super().check_action_permitted(resource)
            return
        # Every action of the transaction (all on the one table ``resource`` names).
        actions = {a for a, _ in _transact_actions(json.loads(self._body or b"{}"))}
        for action in sorted(actions) or ["dynamodb:TransactWriteItems"]:
            self._action = action
            super().check_action_permitted(resource)
        self._action = "dynamodb:TransactWriteItems"

    def _json_protocol(self) -> bool:
        return "X-Amz-Target" in self._headers

    def _raise_access_denied(self) -> None:
        if self._json_protocol():
            raise JsonRESTError(
                _JSON_ERRORS["access_denied"],
                f"User: {self._access_key.arn} is not authorized to perform: {self._action}",
            )
        super()._raise_access_denied()

    def _raise_invalid_access_key(self, reason: str) -> None:
        if self._json_protocol():
            raise JsonRESTError(
                _JSON_ERRORS["invalid_key"],
                "The security token included in the request is invalid.",
            )
        super()._raise_invalid_access_key(reason)

    def _raise_signature_does_not_match(self) -> None:
        if self._json_protocol():
            raise JsonRESTError(
                _JSON_ERRORS["signature"],
                "The request signature we calculated does not match the signature you provided.",
            )
        super()._raise_signature_does_not_match()


_create_access_key_stock = access_control.create_access_key


def _create_access_key(
    account_id: str, partition: str, access_key_id: str, headers: dict[str, str]
) -> Any:
    key = _create_access_key_stock(account_id, partition, access_key_id, headers)
    if isinstance(key, access_control.IAMUserAccessKey):
        backend = iam_backends[account_id][partition]
        for user in backend.list_users("/", None, None):
            for candidate in user.access_keys:
                if candidate.access_key_id == access_key_id and candidate.status != "Active":
                    raise access_control.CreateAccessKeyFailure(reason="InvalidId")
    return key


# --- presigned and anonymous S3 requests -----------------------------------------------------
class _PresignedS3Request(access_control.S3IAMRequest):
    """An S3 request authenticated by a presigned URL's query string."""

    def __init__(
        self,
        account_id: str,
        method: str,
        path: str,
        data: dict[str, str],
        body: bytes,
        headers: dict[str, str],
        action: str,
    ) -> None:
        query = {k: v[0] for k, v in parse_qs(urlsplit(path).query).items()}
        self._query = query
        # The base class reads the access key and scope from an Authorization header and
        # refuses a session token sent with a long-term key: feed it the query's values.
        synthetic = dict(headers.items())
        synthetic["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={query.get('X-Amz-Credential', '')}, "
            f"SignedHeaders={query.get('X-Amz-SignedHeaders', '')}, "
            f"Signature={query.get('X-Amz-Signature', '')}"
        )
        if "X-Amz-Security-Token" in query:
            synthetic["X-Amz-Security-Token"] = query["X-Amz-Security-Token"]
        super().__init__(account_id, method, path, data, body, synthetic, action)

    def check_signature(self) -> None:
        try:
            signed_at = datetime.datetime.strptime(
                self._query["X-Amz-Date"], "%Y%m%dT%H%M%SZ"
            ).replace(tzinfo=datetime.UTC)
            expires = int(self._query["X-Amz-Expires"])
        except (KeyError, ValueError):
            self._raise_signature_does_not_match()
            return
        if datetime.datetime.now(datetime.UTC) > signed_at + datetime.timedelta(seconds=expires):
            raise S3AccessDeniedError()  # S3: "Request has expired"
        parts = urlsplit(self._path)
        # Everything but the signature is signed, exactly as it was sent.
        unsigned = "&".join(
            p for p in parts.query.split("&") if not p.startswith("X-Amz-Signature=")
        )
        signed_headers = self._query.get("X-Amz-SignedHeaders", "host").split(";")
        request = AWSRequest(
            method=self._method,
            url=f"{parts.path}?{unsigned}",
            headers={k: v for k, v in self._headers.items() if k.lower() in signed_headers},
        )
        request.context["timestamp"] = self._query["X-Amz-Date"]
        auth = S3SigV4QueryAuth(
            self._access_key.create_credentials(), self._service, self._region, expires=expires
        )
        canonical = auth.canonical_request(request)
        expected = auth.signature(auth.string_to_sign(request, canonical), request)
        if expected != self._query.get("X-Amz-Signature"):
            self._raise_signature_does_not_match()


class _PostFormS3Request(access_control.S3IAMRequest):
    """An S3 POST authenticated by a presigned form (browser-based upload, SigV4): the
    form's policy is signed, and every one of its conditions must hold."""

    def __init__(
        self,
        account_id: str,
        method: str,
        path: str,
        data: dict[str, str],
        body: bytes,
        headers: dict[str, str],
        action: str,
        *,
        form: dict[str, str],
        bucket: str,
        size: int,
    ) -> None:
        self._form = form
        self._bucket = bucket
        self._size = size
        # The base class reads the access key and scope from an Authorization header.
        synthetic = dict(headers.items())
        synthetic["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={form.get('x-amz-credential', '')}, "
            f"SignedHeaders=, Signature={form.get('x-amz-signature', '')}"
        )
        super().__init__(account_id, method, path, data, body, synthetic, action)

    def check_signature(self) -> None:
        encoded = self._form.get("policy", "")
        secret = self._access_key.create_credentials().secret_key
        scope = self._form.get("x-amz-credential", "").split("/")
        if len(scope) != 5:
            self._raise_signature_does_not_match()
        key = ("AWS4" + secret).encode()
        for part in scope[1:]:  # date, region, service, "aws4_request"
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        expected = hmac.new(key, encoded.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, self._form.get("x-amz-signature", "")):
            self._raise_signature_does_not_match()
        policy = json.loads(base64.b64decode(encoded))
        expires = datetime.datetime.strptime(policy["expiration"], "%Y-%m-%dT%H:%M:%SZ")
        if datetime.datetime.now(datetime.UTC) > expires.replace(tzinfo=datetime.UTC):
            raise S3AccessDeniedError()  # S3: "Invalid according to Policy: Policy expired."
        if not all(self._holds(c) for c in policy.get("conditions", [])):
            raise S3AccessDeniedError()  # S3: "Invalid according to Policy: ..."

    def _holds(self, condition: Any) -> bool:
        fields = {k.lower(): v for k, v in self._form.items()} | {"bucket": self._bucket}
        if isinstance(condition, dict):
            return all(fields.get(k.lower()) == v for k, v in condition.items())
        op, name, value = condition
        if op == "content-length-range":
            return int(name) <= self._size <= int(value)
        got = fields.get(str(name).lstrip("$").lower(), "")
        return bool(got == value if op == "eq" else got.startswith(value))


_authenticate_stock = ActionAuthenticatorMixin._authenticate_and_authorize_action


def _authenticate(self: Any, iam_request_cls: type, resource: str = "*") -> None:
    enforcing = ActionAuthenticatorMixin.request_count >= moto_settings.INITIAL_NO_AUTH_ACTION_COUNT
    s3 = issubclass(iam_request_cls, access_control.S3IAMRequest)
    if enforcing and s3:
        authorization = self.headers.get("Authorization")
        presigned = "X-Amz-Signature=" in urlsplit(self.uri).query
        form = {k: v for k, v in getattr(self, "form_data", {}).items()}
        if authorization is None and "x-amz-signature" in form and "key" in form:
            bucket = resource.removeprefix("arn:aws:s3:::")
            iam_request_cls = functools.partial(  # type: ignore[assignment]
                _PostFormS3Request, form=form, bucket=bucket, size=len(self.body)
            )
            resource = f"{resource}/{form['key']}"  # authorised on the form's object
        elif authorization is None:
            if not presigned:
                raise S3AccessDeniedError()  # anonymous: the bucket is private
            iam_request_cls = _PresignedS3Request
        elif presigned:
            raise InvalidArgumentError(
                "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, "
                "Signature query string parameter or the Authorization header should be "
                "specified",
                "Authorization",
                "",  # S3 echoes the header; a bearer secret is not echoed here
            )
        elif not authorization.startswith("AWS4-HMAC-SHA256 "):
            raise InvalidArgumentError("Unsupported Authorization Type", "Authorization", "")
    _authenticate_stock(self, iam_request_cls, resource)


def main() -> None:
    install()
    from devenv.run.backends.moto_server import main as serve

    serve()


if __name__ == "__main__":
    main()

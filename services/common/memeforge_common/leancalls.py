"""A lean transport for the hot AWS calls (DynamoDB and SQS over AWS JSON, S3's
PutObject): one signed aiohttp request per attempt instead of aiobotocore's per-call
machinery.

aiobotocore spends about 1.2 ms of CPU per call (bench/sdk_calls.py), most of it in
work our calls do not need: its event system (a dozen events per call), endpoint
resolution per call, parameter building, a second walk of the request and of the
response along the operation's shape, and the request's preparation. Sending the same
request with aiohttp costs about a third of that. What a call through aiobotocore does
for us is kept, from botocore's own parts where it has them:

- the same request body and parsed response (awsjson.py, s3put.py), the same headers (botocore's
  serializer's, its User-Agent, ``amz-sdk-invocation-id`` / ``amz-sdk-request``), signed
  as botocore signs (memeforge_common.signing.signed_post_headers) with credentials read
  per attempt from the session's one credentials object, so refreshed and rotated keys
  sign at once;
- the same connection pool, TLS context and timeouts: the client's own aiohttp session;
- the standard retry mode of the client's config, as aiobotocore's own retry handler
  (throttling, transient and modeled retryable errors, 5xx, connection errors,
  DynamoDB's CRC32 check, the retry quota, backoff with jitter), then
  RefreshOnCredentialError for refused credentials;
- the same exceptions: the client's modeled ClientError classes with botocore's
  ``error_response``, and botocore's connection errors for aiohttp's;
- ``memeforge_aws_requests_total`` per attempt and the empty-receive counter (awscalls).

Everything else (bootstrap, the rest of S3, rare operations) still goes through
aiobotocore, and
MEMEFORGE_LEAN_CALLS=0 sends everything there.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, NamedTuple, Protocol

import aiohttp
from aiobotocore.awsrequest import AioAWSResponse
from aiobotocore.retries.standard import (
    AioRetryHandler,
    AioRetryPolicy,
    AioStandardRetryConditions,
)
from botocore.awsrequest import AWSRequest
from botocore.exceptions import (
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    ReadTimeoutError,
    SSLError,
)
from botocore.model import OperationModel
from botocore.retries import quota
from botocore.retries.standard import ExponentialBackoff, RetryEventAdapter, RetryQuotaChecker
from yarl import URL

from memeforge_common.awscalls import count_attempt, count_empty_receive
from memeforge_common.awsjson import WireOperation
from memeforge_common.signing import signed_post_headers

Response = tuple[AioAWSResponse, dict[str, Any]]
Signer = Callable[[Any], dict[str, str]]
"""(frozen credentials) -> the request's headers, signed."""
RetryDecider = Callable[..., Awaitable[float | None]]
"""A ``needs-retry`` handler: (response=, attempts=, ...) -> delay in seconds, or None."""


def botocore_error(err: Exception, request: AWSRequest) -> Exception:
    """The botocore exception aiobotocore raises for an aiohttp error (its httpsession's
    mapping), so callers catching BotoCoreError and the retry checks see the same."""
    url = str(request.url)
    if isinstance(err, aiohttp.ClientSSLError):
        return SSLError(endpoint_url=url, error=err)
    if isinstance(
        err,
        aiohttp.ServerDisconnectedError
        | aiohttp.ClientPayloadError
        | aiohttp.http_exceptions.BadStatusLine,
    ):
        return ConnectionClosedError(error=err, request=request, endpoint_url=url)
    if isinstance(err, aiohttp.ServerTimeoutError):
        if str(err).lower().startswith("connect"):
            return ConnectTimeoutError(endpoint_url=url, error=err)
        return ReadTimeoutError(endpoint_url=url, error=err)
    if isinstance(err, aiohttp.ClientConnectionError | socket.gaierror):
        return EndpointConnectionError(endpoint_url=url, error=err)
    if isinstance(err, asyncio.TimeoutError):
        return ReadTimeoutError(endpoint_url=url, error=err)
    return HTTPClientError(error=err)


class CredentialSource(Protocol):
    """The session's one credentials object (aiobotocore's ``AioCredentials`` or
    ``AioRefreshableCredentials``): asked per attempt, so it refreshes as it would."""

    async def get_frozen_credentials(self) -> Any: ...


class Wire(Protocol):
    """One operation's wire format: its model (for the retry rules) and its response."""

    name: str
    model: OperationModel

    def decode(self, status: int, headers: dict[str, str], body: bytes) -> dict[str, Any]:
        """The parsed response botocore returns; ``headers``: lowercase names."""
        ...


class Request(NamedTuple):
    """One call's request; ``sign`` signs its headers anew for each attempt."""

    method: str
    url: str
    target: URL  # ``url``, parsed once
    body: bytes
    sign: Signer
    chunked: bool = False  # sent with Transfer-Encoding: chunked (an aws-chunked body)


class LeanTransport:
    """Sends one AWS service's hot operations for one client: the AWS JSON 1.0 ones
    (POST /) by name (``call``), any other as a prepared Request (``send``)."""

    def __init__(
        self,
        *,
        client: Any,
        http: aiohttp.ClientSession,
        credentials: CredentialSource,
        user_agent: str,
        refresh: RetryDecider,
        operations: Iterable[str],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        model = client.meta.service_model
        self.service: str = model.service_id.hyphenize()
        self._signing_name: str = model.signing_name
        self._region: str = client.meta.region_name
        self._url = str(client.meta.endpoint_url).rstrip("/") + "/"
        self._yarl_url = URL(self._url, encoded=True)
        self._http = http
        self._credentials = credentials
        self.user_agent = user_agent
        self._refresh = refresh
        self._sleep = sleep  # between attempts (tests record the backoff)
        self._exceptions = client.exceptions
        self._operations = {name: WireOperation(model.operation_model(name)) for name in operations}
        # aiobotocore's standard-mode retry handler, built as it builds one per client.
        self._quota = RetryQuotaChecker(quota.RetryQuota())
        self._retry = AioRetryHandler(
            retry_policy=AioRetryPolicy(
                retry_checker=AioStandardRetryConditions(
                    max_attempts=client.meta.config.retries["total_max_attempts"]
                ),
                retry_backoff=ExponentialBackoff(),
            ),
            retry_event_adapter=RetryEventAdapter(),
            retry_quota=self._quota,  # type: ignore[arg-type]  # the stubs misname it
        )

    async def call(self, operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """``operation`` (AWS JSON) with ``params``, as the aiobotocore client's method
        would: the parsed response, or the client's exception for the error AWS answered."""
        wire = self._operations[operation]
        body = wire.encode(wire.with_tokens(params))
        headers = {**wire.headers, "User-Agent": self.user_agent}

        def sign(keys: Any) -> dict[str, str]:
            return signed_post_headers(
                keys, self._signing_name, self._region, self._url, headers, body
            )

        return await self.send(wire, Request("POST", self._url, self._yarl_url, body, sign))

    async def send(self, wire: Wire, request: Request) -> dict[str, Any]:
        """``request`` of ``wire``'s operation, retried and answered as aiobotocore's
        client answers: the parsed response, or the client's exception."""
        operation = wire.name
        context: dict[str, Any] = {}  # the retry quota keeps its per-call state here
        invocation = str(uuid.uuid4())
        attempts = 0
        while True:
            attempts += 1
            response: Response | None = None
            caught: Exception | None = None
            # Signing fails as aiobotocore's does: at once (no credentials, a provider
            # that cannot refresh), outside the retried part.
            headers = await self._signed(request, invocation, attempts)
            try:
                response = await self._send(wire, request, headers)
            except Exception as err:  # as aiobotocore's endpoint: the retry rules decide
                caught = err
            retry = {"response": response, "attempts": attempts, "caught_exception": caught}
            delay = await self._retry.needs_retry(
                **retry, request_dict={"context": context}, operation=wire.model
            )
            if delay is None:
                delay = await self._refresh(**retry)
            if delay is None:
                break
            await self._sleep(delay)
        if caught is not None:
            raise caught
        assert response is not None  # no exception: an answer
        http, parsed = response
        if "ResponseMetadata" in parsed:
            parsed["ResponseMetadata"]["RetryAttempts"] = attempts - 1
        self._quota.release_retry_quota(context, http)  # type: ignore[arg-type]
        if operation == "ReceiveMessage":
            count_empty_receive(parsed=parsed)
        if http.status_code >= 300:
            error = parsed.get("Error", {})
            # SQS names its modeled exceptions by the QueryErrorCode (botocore's
            # _handle_sqs_compatible_error); other services by the code.
            code = error.get("QueryErrorCode") or error.get("Code")
            raise self._exceptions.from_code(code)(parsed, operation)
        return parsed

    async def _signed(self, request: Request, invocation: str, attempt: int) -> dict[str, str]:
        headers = request.sign(await self._credentials.get_frozen_credentials())
        headers["amz-sdk-invocation-id"] = invocation
        headers["amz-sdk-request"] = f"attempt={attempt}"
        headers["Accept-Encoding"] = "identity"  # as aiobotocore (botocore issue 1255)
        return headers

    async def _send(self, wire: Wire, request: Request, headers: dict[str, str]) -> Response:
        count_attempt(self.service, wire.name)
        try:
            async with self._http.request(
                request.method,
                request.target,
                data=request.body,
                headers=headers,
                chunked=request.chunked or None,
            ) as raw:
                response_headers = {
                    name.decode().lower(): value.decode() for name, value in raw.raw_headers
                }
                # A plain dict of lowercase names, as aiobotocore's httpsession gives it.
                http = AioAWSResponse(request.url, raw.status, response_headers, raw)  # type: ignore[arg-type]
                content: bytes = await http.content  # type: ignore[misc]
        except Exception as err:
            sent = AWSRequest(
                method=request.method, url=request.url, data=request.body, headers=headers
            )
            raise botocore_error(err, sent) from err
        return http, wire.decode(raw.status, response_headers, content)

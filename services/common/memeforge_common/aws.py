"""One aioboto3 session and one long-lived client per AWS service per process.

Endpoints come from ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_<SERVICE>`` and credentials
from the default chain, both read by botocore itself. Credentials are never copied out
of the session: refreshable providers (container, web identity, instance metadata)
keep long-running workers signing with fresh keys across rotation, and a call refused
for its credentials (expired, rotated away, revoked) refreshes them and is retried.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aioboto3
from aiobotocore.config import AioConfig
from botocore.credentials import RefreshableCredentials

from memeforge_common.settings import Settings

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_sqs import SQSClient

log = logging.getLogger(__name__)


def _has_endpoint_override(service_env_suffix: str) -> bool:
    specific = os.environ.get(f"AWS_ENDPOINT_URL_{service_env_suffix}")
    return bool(specific or os.environ.get("AWS_ENDPOINT_URL"))


@dataclass(frozen=True)
class Timeouts:
    connect_s: float
    read_s: float
    max_attempts: int


# Workers can wait: long polls take up to 20 s, and a slow call beats a retried job.
WORKER_TIMEOUTS = Timeouts(connect_s=5, read_s=30, max_attempts=5)
# The API answers people: fail fast into a 503 + Retry-After instead of hanging.
API_TIMEOUTS = Timeouts(connect_s=2, read_s=10, max_attempts=3)


def client_config(
    *, s3: bool = False, pool: int = 64, timeouts: Timeouts = WORKER_TIMEOUTS
) -> AioConfig:
    # "standard" retry mode: exponential backoff with jitter on throttling, 5xx and
    # connection errors, instead of a hand-written retry loop.
    options: dict[str, object] = {
        "retries": {"mode": "standard", "max_attempts": timeouts.max_attempts},
        "connect_timeout": timeouts.connect_s,
        "read_timeout": timeouts.read_s,
        "max_pool_connections": pool,
    }
    if s3:
        # Emulators on 127.0.0.1 cannot serve virtual-hosted bucket names.
        style = "path" if _has_endpoint_override("S3") else "auto"
        options["s3"] = {"addressing_style": style}
        options["signature_version"] = "s3v4"
    return AioConfig(**options)  # type: ignore[arg-type]


# "The credentials that signed this call are no good" (expired, rotated away, revoked), by
# protocol: query/XML (S3, STS, SQS query) and JSON (DynamoDB, SQS JSON).
CREDENTIAL_ERROR_CODES = frozenset(
    {
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "InvalidAccessKeyId",
        "InvalidToken",
        "SignatureDoesNotMatch",
        "InvalidSignatureException",
    }
)


async def session_credentials(session: aioboto3.Session) -> object:
    """The session's one credentials object (its clients sign with it), resolved by the chain."""
    found: Any = session.get_credentials()  # aioboto3: a coroutine, whatever its stubs say
    return await found if inspect.isawaitable(found) else found


def fit_refresh_windows(credentials: object) -> None:
    """botocore refreshes credentials from 15 min before their Expiration (one call does,
    the others go on) and makes every call wait for fresh ones from 10 min before. Shorter-
    lived credentials (a test's credentials vendor hands out 60 s) would then be fetched
    again on every credential access, several times per AWS call, at ~17 ms of CPU each
    (aiobotocore builds a TLS context per fetch). Scale both windows to a quarter and a
    sixth of the lifetime instead; credentials that live an hour or more (IRSA, Pod
    Identity, ECS, instance roles) keep botocore's windows."""
    if not isinstance(credentials, RefreshableCredentials):
        return
    creds: Any = credentials  # the windows are botocore attributes without a public setter
    if creds._expiry_time is None:  # deferred: not fetched yet
        return
    lifetime = max(4.0, float(creds._seconds_remaining()))
    creds._advisory_refresh_timeout = min(creds._advisory_refresh_timeout, lifetime / 4)
    creds._mandatory_refresh_timeout = min(creds._mandatory_refresh_timeout, lifetime / 6)


class RefreshOnCredentialError:
    """A ``needs-retry`` handler: when AWS refuses a call's credentials, refresh the session's
    refreshable credentials now (botocore itself refreshes only near their Expiration, so a
    key revoked early would fail every call until then) and retry the call at once.
    Concurrent failures share one refresh; static credentials are left alone."""

    MAX_ATTEMPTS = 3

    def __init__(self, session: aioboto3.Session) -> None:
        self._session = session
        self._lock = asyncio.Lock()
        self._refreshes = 0

    async def __call__(self, response: Any = None, attempts: int = 1, **_: Any) -> float | None:
        if response is None or attempts >= self.MAX_ATTEMPTS:
            return None
        code = response[1].get("Error", {}).get("Code")
        if code not in CREDENTIAL_ERROR_CODES:
            return None
        credentials = await session_credentials(self._session)
        if not isinstance(credentials, RefreshableCredentials):
            return None
        seen = self._refreshes
        async with self._lock:
            if self._refreshes == seen:  # nobody refreshed while we waited
                try:
                    # botocore's own refresh path; it has no public "refresh now".
                    refreshed = credentials._protected_refresh(is_mandatory=True)  # type: ignore[attr-defined]
                    if inspect.isawaitable(refreshed):
                        await refreshed
                except Exception as err:  # the provider is down: the call fails as it was
                    log.warning("AWS refused our credentials (%s); refresh failed: %r", code, err)
                    return None
                self._refreshes += 1
                log.warning("AWS refused our credentials (%s): refreshed them, retrying", code)
        return 0.0


@dataclass(frozen=True)
class AwsClients:
    s3: S3Client
    sqs: SQSClient
    dynamodb: DynamoDBClient

    @classmethod
    @asynccontextmanager
    async def open(
        cls, settings: Settings, timeouts: Timeouts = WORKER_TIMEOUTS
    ) -> AsyncIterator[AwsClients]:
        session = aioboto3.Session(region_name=settings.aws_region)
        fit_refresh_windows(await session_credentials(session))
        async with AsyncExitStack() as stack:
            enter = stack.enter_async_context
            s3 = await enter(session.client("s3", config=client_config(s3=True, timeouts=timeouts)))
            sqs = await enter(session.client("sqs", config=client_config(timeouts=timeouts)))
            ddb = await enter(session.client("dynamodb", config=client_config(timeouts=timeouts)))
            refresh = RefreshOnCredentialError(session)
            for client in (s3, sqs, ddb):
                client.meta.events.register("needs-retry", refresh)  # type: ignore[arg-type]
            yield cls(s3=s3, sqs=sqs, dynamodb=ddb)

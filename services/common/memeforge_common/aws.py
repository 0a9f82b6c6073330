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
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aioboto3
import aiobotocore
from aiobotocore.config import AioConfig
from botocore.useragent import UserAgentString

from memeforge_common import botocompat, callpath, leanclients, signing
from memeforge_common.awscalls import count_aws_calls
from memeforge_common.settings import Settings

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_ses import SESClient
    from types_aiobotocore_sqs import SQSClient

log = logging.getLogger(__name__)


def _has_endpoint_override(service_env_suffix: str) -> bool:
    specific = os.environ.get(f"AWS_ENDPOINT_URL_{service_env_suffix}")
    return bool(specific or os.environ.get("AWS_ENDPOINT_URL"))


def emulated(service_env_suffix: str) -> bool:
    """Whether this AWS service is an emulator's (its endpoint is overridden)."""
    return _has_endpoint_override(service_env_suffix)


@dataclass(frozen=True)
class Timeouts:
    connect_s: float
    read_s: float
    max_attempts: int


# Workers can wait: long polls take up to 20 s, and a slow call beats a retried job.
WORKER_TIMEOUTS = Timeouts(connect_s=5, read_s=30, max_attempts=5)
# The API answers people: fail fast into a 503 + Retry-After instead of hanging.
API_TIMEOUTS = Timeouts(connect_s=2, read_s=10, max_attempts=3)


# botocore rebuilds its User-Agent twice per request (to carry per-call feature ids), at
# about 0.1 ms of CPU each; a User-Agent set in the config is sent as it is. So it is
# built once per process, with what botocore's says about the SDK and the platform.
USER_AGENT = (
    f"aiobotocore/{aiobotocore.__version__} "
    f"{UserAgentString.from_environment().to_string()} app/memeforge"
)


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
        "user_agent": USER_AGENT,
        # Our own models validate what we send (pydantic, before any call is made);
        # botocore's second walk over every request's parameters costs CPU per call,
        # and AWS answers a malformed request with a ValidationException anyway.
        "parameter_validation": False,
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
    Identity, ECS, instance roles) keep botocore's windows. Computed from each new set of
    keys (AwsClients.open hooks it to every refresh), since lifetimes may change."""
    if not botocompat.is_refreshable(credentials):
        return
    remaining = botocompat.seconds_remaining(credentials)
    if remaining is None:  # deferred: not fetched yet
        return
    lifetime = max(4.0, remaining)
    botocompat.set_refresh_windows(
        credentials,
        min(botocompat.DEFAULT_ADVISORY_S, lifetime / 4),
        min(botocompat.DEFAULT_MANDATORY_S, lifetime / 6),
    )


REFRESH_COOLDOWN_S = 10.0
"""At most one refresh on refusal per this long, per process: revoked keys that the
provider keeps handing out must not turn every refused call into an STS/IMDS call."""


class RefreshOnCredentialError:
    """A ``needs-retry`` handler: when AWS refuses a call's credentials, refresh the session's
    refreshable credentials now (botocore itself refreshes only near their Expiration, so a
    key revoked early would fail every call until then) and retry the call at once.

    Single flight: concurrent refusals share one refresh. Cooldown: within
    ``cooldown_s`` of a refresh, a refused call is retried once if that refresh brought
    new keys (it may have been signed with the old ones), and otherwise fails as it was.
    A refresh that brings back the refused keys is not retried. Static credentials are
    left alone."""

    MAX_ATTEMPTS = 3

    def __init__(
        self,
        session: aioboto3.Session,
        *,
        cooldown_s: float = REFRESH_COOLDOWN_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._session = session
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._lock = asyncio.Lock()
        self._last_refresh: float | None = None
        self._last_changed_keys = False
        self.refreshes = 0

    async def __call__(self, response: Any = None, attempts: int = 1, **_: Any) -> float | None:
        if response is None or attempts >= self.MAX_ATTEMPTS:
            return None
        code = response[1].get("Error", {}).get("Code")
        if code not in CREDENTIAL_ERROR_CODES:
            return None
        credentials = await session_credentials(self._session)
        if not botocompat.is_refreshable(credentials):
            return None
        seen = self.refreshes
        async with self._lock:
            if self.refreshes != seen:  # refreshed while we waited: retry with those keys
                return 0.0 if self._last_changed_keys else None
            now = self._clock()
            if self._last_refresh is not None and now - self._last_refresh < self._cooldown_s:
                return 0.0 if self._last_changed_keys and attempts == 1 else None
            self._last_refresh = now  # a failed refresh counts too: the provider may be down
            before = botocompat.current_keys(credentials)
            try:
                await botocompat.refresh_now(credentials)
            except Exception as err:  # the call fails as it was
                self._last_changed_keys = False
                log.warning("AWS refused our credentials (%s); refresh failed: %r", code, err)
                return None
            self.refreshes += 1
            self._last_changed_keys = botocompat.current_keys(credentials) != before
            if not self._last_changed_keys:
                log.warning("AWS refused our credentials (%s); a refresh gave the same", code)
                return None
            log.warning("AWS refused our credentials (%s): refreshed them, retrying", code)
        return 0.0


@dataclass(frozen=True)
class AwsClients:
    s3: S3Client
    sqs: SQSClient
    dynamodb: DynamoDBClient
    _ses: SESClient | None = None

    @property
    def ses(self) -> SESClient:
        """Opened only for the services that mail (``open(..., ses=True)``)."""
        if self._ses is None:
            raise RuntimeError("AwsClients.open(..., ses=True) opens the SES client")
        return self._ses

    @classmethod
    @asynccontextmanager
    async def open(
        cls, settings: Settings, timeouts: Timeouts = WORKER_TIMEOUTS, *, ses: bool = False
    ) -> AsyncIterator[AwsClients]:
        session = aioboto3.Session(region_name=settings.aws_region)
        credentials = await session_credentials(session)
        if botocompat.is_refreshable(credentials):
            fit_refresh_windows(credentials)
            botocompat.after_each_refresh(credentials, fit_refresh_windows)
        async with AsyncExitStack() as stack:
            enter = stack.enter_async_context
            s3 = await enter(session.client("s3", config=client_config(s3=True, timeouts=timeouts)))
            sqs = await enter(session.client("sqs", config=client_config(timeouts=timeouts)))
            ddb = await enter(session.client("dynamodb", config=client_config(timeouts=timeouts)))
            mail = None
            if ses:
                mail = await enter(session.client("ses", config=client_config(timeouts=timeouts)))
            refresh = RefreshOnCredentialError(session)
            for client in (s3, sqs, ddb, mail):
                if client is not None:
                    client.meta.events.register("needs-retry", refresh)  # type: ignore[arg-type]
                    signing.install(client)
                    callpath.trim(client)
                    count_aws_calls(client.meta.events)
            if settings.lean_calls:  # the hot DynamoDB, SQS and S3 calls: leancalls.py
                sqs = await leanclients.lean_sqs(sqs, credentials, refresh)
                ddb = await leanclients.lean_dynamodb(ddb, credentials, refresh)
                s3 = await leanclients.lean_s3(s3, credentials, refresh)
            yield cls(s3=s3, sqs=sqs, dynamodb=ddb, _ses=mail)

"""Who is calling: ``Authorization: Bearer mf_<key id>_<secret>`` → a tenant and scopes.

Key records are cached per process for ``MEMEFORGE_KEY_CACHE_S`` seconds, so a revoked
key is refused by every api process at most that long after the revocation (and a key
used at a high rate costs one GetItem per process per period, not one per request: the
requests that find its entry missing or expired together share one read, SharedReads).
Every authenticated request then passes the key's rate limit (memeforge_api.ratelimit).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from botocore.exceptions import ClientError
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from memeforge_common.apikeys import LAST_USED_RESOLUTION, ApiKey, KeyStore, Scope, parse_token
from memeforge_common.models import utcnow
from memeforge_common.sharedreads import SharedReads

from memeforge_api.problems import Problem
from memeforge_api.ratelimit import RateLimiter

log = logging.getLogger("memeforge.api")

MAX_CACHED_KEYS = 10_000  # bounded memory (invariant 7): the oldest entry goes first

_bearer = HTTPBearer(auto_error=False, description="an API key: mf_<key id>_<secret>")


@dataclass(frozen=True)
class Principal:
    key_id: str
    tenant: str
    scopes: frozenset[Scope]


class KeyCache:
    """Key records (or their absence) by key id, each for at most ``ttl_s`` seconds."""

    def __init__(self, store: KeyStore, ttl_s: float) -> None:
        self._store = store
        self._ttl_s = ttl_s
        self._entries: dict[str, tuple[float, ApiKey | None]] = {}
        self._touched: dict[str, float] = {}
        self._reads: SharedReads[str, ApiKey | None] = SharedReads()

    async def get(self, key_id: str) -> ApiKey | None:
        cached = self._entries.get(key_id)
        if cached is not None and time.monotonic() - cached[0] < self._ttl_s:
            return cached[1]
        return await self._reads.read(key_id, lambda: self._read(key_id))

    async def _read(self, key_id: str) -> ApiKey | None:
        now = time.monotonic()
        key = await self._store.get(key_id)
        self._entries.pop(key_id, None)
        if len(self._entries) >= MAX_CACHED_KEYS:
            self._entries.pop(next(iter(self._entries)))
        self._entries[key_id] = (now, key)
        return key

    async def record_use(self, key: ApiKey) -> None:
        """last_used_at: this process tries at most once a minute per key, and the store's
        condition keeps it to one write a minute across every process."""
        now = time.monotonic()
        if now - self._touched.get(key.key_id, -1e9) < LAST_USED_RESOLUTION.total_seconds():
            return
        if len(self._touched) >= MAX_CACHED_KEYS:
            self._touched.pop(next(iter(self._touched)))
        self._touched[key.key_id] = now
        try:
            await self._store.touch(key.key_id, utcnow())
        except ClientError as err:  # bookkeeping only: never fail the request for it
            log.warning("could not record key use: %s", err.response.get("Error", {}))


def _unauthorized(detail: str) -> Problem:
    return Problem(
        401,
        "unauthorized",
        "A valid API key is required",
        detail,
        headers={"WWW-Authenticate": 'Bearer realm="memeforge"'},
    )


async def authenticate(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None:
        raise _unauthorized("send Authorization: Bearer <API key>")
    parsed = parse_token(credentials.credentials)
    if parsed is None:
        raise _unauthorized("malformed API key")
    cache: KeyCache = request.app.state.keys
    key = await cache.get(parsed[0])
    if key is None or not key.accepts(parsed[1]):
        raise _unauthorized("unknown or revoked API key")
    await cache.record_use(key)
    limiter: RateLimiter | None = request.app.state.rate_limiter
    if limiter is None:
        return Principal(key_id=key.key_id, tenant=key.tenant, scopes=key.scopes)
    decision = await limiter.check(key.key_id)
    request.state.rate_limit = decision
    if not decision.admitted:
        raise Problem(
            429,
            "rate-limited",
            "Too many requests for this API key",
            f"retry in {decision.retry_after_s} s",
            headers=decision.headers(),
        )
    return Principal(key_id=key.key_id, tenant=key.tenant, scopes=key.scopes)


def _holding(scope: Scope) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency: the caller, who must hold ``scope`` (else 403)."""

    async def dependency(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        if scope not in principal.scopes:
            raise Problem(
                403,
                "insufficient-scope",
                "The API key lacks a scope this request needs",
                f"needs {scope.value}",
                headers={
                    "WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{scope.value}"'
                },
                required_scope=scope.value,
            )
        return principal

    return dependency


TemplatesRead = Annotated[Principal, Depends(_holding(Scope.TEMPLATES_READ))]
TemplatesWrite = Annotated[Principal, Depends(_holding(Scope.TEMPLATES_WRITE))]
MemesRead = Annotated[Principal, Depends(_holding(Scope.MEMES_READ))]
MemesWrite = Annotated[Principal, Depends(_holding(Scope.MEMES_WRITE))]

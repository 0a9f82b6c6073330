"""Every private botocore / aiobotocore attribute memeforge touches, and only here.

botocore has no public "refresh these credentials now" and no setter for its refresh
windows, so credential refresh (aws.py) needs a few private attributes of
``RefreshableCredentials``, the fast signer (signing.py) a client's request signer and
botocore's Host-header rule, and callpath.py a client's endpoint-ruleset resolver.
tests/unit/test_botocompat.py checks each one against the installed botocore and fails
loudly when an upgrade changes them; pyproject.toml pins the botocore range those tests
passed on. signing.py's subclasses of botocore's SigV4
signers are pinned by tests/unit/test_signing.py (same signatures as botocore's own).
The lean transport (leancalls.py) sends over a client's own aiohttp session (its pool,
TLS context and timeouts) with the User-Agent that client sends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
from aiobotocore.credentials import AioRefreshableCredentials
from aiobotocore.httpsession import AIOHTTPSession
from botocore import auth as _auth
from botocore import handlers as _handlers
from botocore.credentials import RefreshableCredentials

_REFRESHABLE: Any = RefreshableCredentials  # its private attributes have no stubs
DEFAULT_ADVISORY_S = float(_REFRESHABLE._advisory_refresh_timeout)
"""botocore's own windows (15 and 10 min before expiry), class attributes."""
DEFAULT_MANDATORY_S = float(_REFRESHABLE._mandatory_refresh_timeout)


def is_refreshable(credentials: object) -> bool:
    return isinstance(credentials, AioRefreshableCredentials)


def seconds_remaining(credentials: Any) -> float | None:
    """Lifetime left of the current keys; None before the first fetch (deferred)."""
    if credentials._expiry_time is None:
        return None
    return float(credentials._seconds_remaining())


def set_refresh_windows(credentials: Any, advisory_s: float, mandatory_s: float) -> None:
    credentials._advisory_refresh_timeout = advisory_s
    credentials._mandatory_refresh_timeout = mandatory_s


def refresh_windows(credentials: Any) -> tuple[float, float]:
    return (
        float(credentials._advisory_refresh_timeout),
        float(credentials._mandatory_refresh_timeout),
    )


def current_keys(credentials: Any) -> tuple[str | None, str | None, str | None]:
    """The keys as last fetched, without triggering a refresh."""
    return (credentials._access_key, credentials._secret_key, credentials._token)


async def refresh_now(credentials: Any) -> None:
    """A mandatory refresh through botocore's own path, under its own refresh lock, so it
    never runs beside one that botocore started. Raises what the provider raised."""
    lock: asyncio.Lock = credentials._refresh_lock
    async with lock:
        await credentials._protected_refresh(is_mandatory=True)


def after_each_refresh(credentials: Any, callback: Callable[[Any], None]) -> None:
    """Call ``callback(credentials)`` after every successful refresh: botocore's own
    (near expiry) and refresh_now's."""
    refresh = credentials._protected_refresh

    async def refreshed(is_mandatory: bool) -> None:
        await refresh(is_mandatory=is_mandatory)
        callback(credentials)

    credentials._protected_refresh = refreshed


def host_from_url(url: str) -> str:
    """The Host header botocore signs for ``url`` (lowercase, default port dropped)."""
    return str(_auth._host_from_url(url))  # type: ignore[attr-defined]


def request_signer(client: Any) -> Any:
    """A client's request signer (aiobotocore's ``AioRequestSigner``)."""
    return client._request_signer


def endpoint_ruleset(client: Any) -> dict[str, Any] | None:
    """The client's endpoint ruleset as botocore loaded it (its loader caches the file),
    or None for a service without one."""
    if client._ruleset_resolver is None:
        return None
    model = client.meta.service_model
    ruleset: dict[str, Any] = client._loader.load_service_model(
        model.service_name, "endpoint-rule-set-1", model.api_version
    )
    return ruleset


def endpoint_params(client: Any) -> dict[str, Any]:
    """The ruleset parameters the client's resolver fills in for every call, by name."""
    params: dict[str, Any] = client._ruleset_resolver._param_definitions
    return params


def set_endpoint_params(client: Any, params: dict[str, Any]) -> None:
    """Have the client's resolver fill in only ``params`` (a subset of its own)."""
    client._ruleset_resolver._param_definitions = params


def drop_expect_continue(client: Any) -> None:
    """Unregister botocore's ``Expect: 100-continue`` for S3 uploads on this client's own
    event emitter (each client has a copy; the session's is untouched)."""
    client.meta.events.unregister("before-call.s3", _handlers.add_expect_header)


def user_agent(client: Any) -> str:
    """The User-Agent header the client sends (config's ``user_agent`` plus botocore's tail)."""
    return str(client._user_agent_creator.to_string())


def is_proxied(client: Any, url: str) -> bool:
    """Whether the client sends a request to ``url`` through a proxy."""
    proxy_config: Any = client._endpoint.http_session._proxy_config
    return proxy_config.proxy_url_for(url) is not None


async def resolve_endpoint(
    client: Any, operation: Any, params: dict[str, Any]
) -> tuple[str, dict[str, str], str | None, dict[str, Any]]:
    """What the client's endpoint ruleset answers for ``operation`` with ``params``, as its
    ``_make_api_call`` asks: the URL, the headers to add, the auth type and the signing
    context (name, region)."""
    context: dict[str, Any] = {"client_config": client.meta.config}
    url, headers, _ = await client._resolve_endpoint_ruleset(operation, params, context)
    return str(url), dict(headers or {}), context.get("auth_type"), context.get("signing", {})


async def aiohttp_session(client: Any) -> aiohttp.ClientSession | None:
    """The aiohttp session a client sends its requests to its endpoint over, created as
    aiobotocore creates it (connection pool, TLS context, timeouts, keep-alive); None for
    a client that sends through a proxy or through another HTTP library."""
    http = client._endpoint.http_session
    if not isinstance(http, AIOHTTPSession):
        return None
    proxy_config: Any = http._proxy_config  # type: ignore[attr-defined]
    if proxy_config.proxy_url_for(client.meta.endpoint_url) is not None:
        return None
    session: aiohttp.ClientSession = await http._get_session(None)  # type: ignore[attr-defined]
    return session

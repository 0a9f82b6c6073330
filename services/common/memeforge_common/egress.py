"""Outbound HTTP to addresses a client chose (template URLs, webhooks), guarded against SSRF.

One call, ``request``: it refuses anything but http(s), resolves the host, refuses the
request if any address it resolves to is not a public unicast one (loopback, private,
link-local and the metadata endpoint 169.254.169.254, CGNAT, multicast, unspecified,
reserved, IPv6 ULA and link-local; an IPv4 address embedded in IPv6 -- mapped, NAT64,
6to4 -- is judged as that IPv4 address), then connects to exactly the addresses it
checked: the check runs inside the HTTP client's resolver, so no second DNS lookup can
answer differently (no rebinding window), while the Host header and TLS SNI/certificate
check still use the URL's name. It follows no redirects (a 3xx comes back to the caller,
who re-checks ``Location`` by calling ``request`` again), ignores proxy variables, has
short timeouts, and reads at most ``max_bytes`` of the body, streaming.

``EgressPolicy.allow`` lists networks that are allowed although not public: only for
local development and tests (``MEMEFORGE_EGRESS_ALLOW=127.0.0.1/32``).

The client is aiohttp: it is already in every image (aiobotocore's transport), and its
resolver hook (``aiohttp.abc.AbstractResolver``) is a public API that makes the checked
address the connected one with no URL rewriting.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from memeforge_common import limits
from memeforge_common.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
_ULA = ipaddress.IPv6Network("fc00::/7")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_READ_CHUNK = 64 * 1024


class EgressError(Exception):
    """Base of every refusal and failure of ``request``; ``str()`` is safe to show a client."""


class InvalidTarget(EgressError):
    """Not an absolute http(s) URL with a host."""


class ForbiddenAddress(EgressError):
    """The target is, or resolves to, an address that is not public (and not allow-listed)."""


class Unreachable(EgressError):
    """DNS, connect, TLS or read failed, or a timeout ran out."""


class ResponseTooLarge(EgressError):
    """The body went past ``max_bytes``; ``status`` is the response's status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class EgressPolicy:
    allow: tuple[IPNetwork, ...] = ()
    connect_timeout_s: float = limits.EGRESS_CONNECT_TIMEOUT_S
    # The whole request: connect, send, headers and body. A slow drip ends here.
    total_timeout_s: float = limits.EGRESS_TIMEOUT_S

    @classmethod
    def from_settings(cls, settings: Settings) -> EgressPolicy:
        return cls(
            allow=settings.egress_allow,
            connect_timeout_s=settings.egress_connect_timeout_s,
            total_timeout_s=settings.egress_timeout_s,
        )


@dataclass(frozen=True)
class EgressResponse:
    url: str
    status: int
    headers: Mapping[str, str] = field(repr=False)
    body: bytes = field(repr=False)

    @property
    def redirect_url(self) -> str | None:
        """The absolute ``Location`` of a redirect (3xx), else None. Not yet checked."""
        location = self.headers.get("Location")
        if not 300 <= self.status < 400 or not location:
            return None
        return urljoin(self.url, location)


def refusal(address: IPAddress, allow: tuple[IPNetwork, ...] = ()) -> str | None:
    """Why ``address`` may not be connected to ("loopback", ...), or None if it may."""
    judged = _embedded_ipv4(address) or address
    if any(judged in net for net in allow if net.version == judged.version):
        return None
    checks = (
        ("unspecified", judged.is_unspecified),
        ("loopback", judged.is_loopback),
        ("link-local", judged.is_link_local),
        ("multicast", judged.is_multicast),
        ("carrier-grade NAT", judged in _CGNAT),
        ("unique local", judged in _ULA),
        ("reserved", judged.is_reserved),
        ("private", judged.is_private),
        ("not globally routable", not judged.is_global),
    )
    return next((reason for reason, hit in checks if hit), None)


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def check_url(url: str, policy: EgressPolicy) -> str:
    """The URL's host, if the URL may be requested before DNS (scheme, host, IP literal)."""
    try:
        parts = urlsplit(url)
        port = parts.port  # a malformed port raises here, not in the client
    except ValueError as err:
        raise InvalidTarget("not a valid URL") from err
    if parts.scheme not in ("http", "https"):
        raise InvalidTarget("only http and https URLs are allowed")
    host = parts.hostname
    if not host or port == 0:
        raise InvalidTarget("the URL has no host and port to connect to")
    try:
        literal: IPAddress = ipaddress.ip_address(host)
    except ValueError:
        legacy = _legacy_ipv4(host)
        if legacy is None:
            return host  # a name: judged at resolution
        if refusal(legacy, policy.allow) is None:
            raise InvalidTarget(f"{host} is not a canonical IPv4 address") from None
        literal = legacy
    reason = refusal(literal, policy.allow)
    if reason:
        raise ForbiddenAddress(f"{host} is a {reason} address")
    return host


def _legacy_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """The address of a numeric IPv4 form libc accepts but ipaddress does not
    (``2130706433``, ``127.1``, ``0x7f.0.0.1``, ``0177.0.0.1``), else None."""
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


class _CheckingResolver(AbstractResolver):
    """Resolves like the system does, then refuses the lookup unless every address passes."""

    def __init__(self, allow: tuple[IPNetwork, ...]) -> None:
        self._allow = allow

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, family=family, type=socket.SOCK_STREAM)
        except OSError as err:
            raise Unreachable(f"cannot resolve {host}") from err
        results: list[ResolveResult] = []
        for fam, _, proto, _, sockaddr in infos:
            address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
            reason = refusal(address, self._allow)
            if reason:
                raise ForbiddenAddress(f"{host} resolves to a {reason} address")
            results.append(
                ResolveResult(
                    hostname=host,
                    host=str(sockaddr[0]),
                    port=int(sockaddr[1]),
                    family=fam,
                    proto=proto,
                    flags=socket.AI_NUMERICHOST,
                )
            )
        if not results:
            raise Unreachable(f"cannot resolve {host}")
        return results

    async def close(self) -> None:
        return None


async def request(
    method: str,
    url: str,
    *,
    policy: EgressPolicy,
    max_bytes: int,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
) -> EgressResponse:
    """One guarded HTTP request; raises an ``EgressError`` for every refusal and failure."""
    host = check_url(url, policy)
    timeout = aiohttp.ClientTimeout(
        total=policy.total_timeout_s,
        connect=policy.connect_timeout_s,
        sock_connect=policy.connect_timeout_s,
    )
    # A fresh connector per request: no DNS cache and no pooled connection to reuse.
    connector = aiohttp.TCPConnector(
        resolver=_CheckingResolver(policy.allow), use_dns_cache=False, force_close=True
    )
    sent = {"Accept-Encoding": "identity", **(headers or {})}
    try:
        async with (
            asyncio.timeout(policy.total_timeout_s),
            aiohttp.ClientSession(
                connector=connector, timeout=timeout, trust_env=False, auto_decompress=False
            ) as session,
            session.request(method, url, headers=sent, data=body, allow_redirects=False) as resp,
        ):
            data = await _read_capped(resp, max_bytes)
            return EgressResponse(url, resp.status, resp.headers, data)
    except EgressError:
        raise
    except TimeoutError as err:
        raise Unreachable(f"{host} did not answer within {policy.total_timeout_s:g} s") from err
    except (aiohttp.ClientError, OSError) as err:
        raise Unreachable(f"cannot reach {host}") from err


async def _read_capped(resp: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    declared = resp.content_length
    if declared is not None and declared > max_bytes:
        raise ResponseTooLarge(f"the body is over {max_bytes} bytes", resp.status)
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(_READ_CHUNK):
        size += len(chunk)
        if size > max_bytes:
            raise ResponseTooLarge(f"the body is over {max_bytes} bytes", resp.status)
        chunks.append(chunk)
    return b"".join(chunks)

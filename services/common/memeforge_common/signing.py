"""SigV4 signing at a third of botocore's CPU, byte for byte the same signature.

botocore signs every request by building its header map twice (an ``email.message``
object each time), parsing the URL three times, preparing the whole request once more
just to hash its body, and deriving the signing key (four HMACs) anew. ``install`` makes a
client's signer hand out the subclasses below instead of ``SigV4Auth`` / ``S3SigV4Auth``:
the same algorithm, with each of those done once (the signing key once per day, region,
service and secret). Credentials are still read per request from the client's signer
(``get_frozen_credentials``), so refreshed and rotated keys sign at once.

Any other signer botocore picks (presigned URLs, SigV4a, unsigned operations) is left as
it is. ``signed_post_headers`` and ``signed_s3_headers`` sign the lean transport's
requests (leancalls.py) the same way without building an ``AWSRequest`` (whose
``email.message`` headers cost more than the signature itself). tests/unit/test_signing.py
(and test_s3put.py for uploads) signs many request shapes both ways and requires the
same headers, so a botocore upgrade that changes signing fails there first.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from hashlib import sha256
from typing import Any
from urllib.parse import quote, urlsplit

from botocore.auth import (
    EMPTY_SHA256_HASH,
    SIGNED_HEADERS_BLACKLIST,
    SIGV4_TIMESTAMP,
    S3SigV4Auth,
    SigV4Auth,
)
from botocore.awsrequest import AWSRequest
from botocore.compat import ensure_unicode
from botocore.exceptions import NoCredentialsError
from botocore.utils import normalize_url_path

from memeforge_common import botocompat

_ORIGIN = re.compile(r"[^:/?#]*://[^/?#]*")
_BLACKLIST = frozenset(SIGNED_HEADERS_BLACKLIST)


@lru_cache(maxsize=64)
def _host(origin: str) -> str:
    """The Host header botocore derives from a URL: it depends on scheme and netloc alone."""
    return botocompat.host_from_url(origin)


def host_for(url: str) -> str:
    found = _ORIGIN.match(url)
    return _host(found.group(0)) if found else botocompat.host_from_url(url)


@lru_cache(maxsize=16)
def _signing_key(secret_key: str, date: str, region: str, service: str) -> bytes:
    key = hmac.new(f"AWS4{secret_key}".encode(), date.encode(), sha256).digest()
    for part in (region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), sha256).digest()
    return key


class FastSigV4Auth(SigV4Auth):
    """SigV4Auth with its pure steps done once; ``add_auth`` and the rest stay botocore's."""

    _headers_memo: tuple[AWSRequest, tuple[tuple[str, Any], ...], dict[str, str]] | None = None

    def headers_to_sign(self, request: AWSRequest) -> Any:
        # Asked twice per signature (canonical request, Authorization header).
        items = tuple(request.headers.items())
        memo = self._headers_memo
        if memo is not None and memo[0] is request and memo[1] == items:
            return memo[2]
        headers = {}
        for name, value in items:
            lname = name.lower()
            if lname not in _BLACKLIST:
                headers[lname] = value
        if "host" not in headers:
            headers["host"] = host_for(str(request.url))
        self._headers_memo = (request, items, headers)
        return headers

    def canonical_headers(self, headers_to_sign: Any) -> str:
        return "\n".join(
            f"{key}:{ensure_unicode(' '.join(headers_to_sign[key].split()))}"
            for key in sorted(headers_to_sign)
        )

    def signed_headers(self, headers_to_sign: Any) -> str:
        return ";".join(sorted(name.strip() for name in headers_to_sign))

    def payload(self, request: AWSRequest) -> str:
        data: Any = request.data
        steps: Any = self  # botocore's private steps, kept as they are
        if (
            not isinstance(data, bytes | str)
            or steps._is_streaming_checksum_payload(request)
            or not steps._should_sha256_sign_payload(request)
        ):
            return super().payload(request)
        body = data.encode("utf-8") if isinstance(data, str) else data
        return sha256(body).hexdigest() if body else EMPTY_SHA256_HASH

    def canonical_request(self, request: AWSRequest) -> str:
        steps: Any = self
        parts = urlsplit(request.url)
        if request.params:
            query = steps._canonical_query_string_params(request.params)
        else:
            query = steps._canonical_query_string_url(parts)
        headers = self.headers_to_sign(request)
        if "X-Amz-Content-SHA256" in request.headers:
            body_checksum = request.headers["X-Amz-Content-SHA256"]
        else:
            body_checksum = self.payload(request)
        return "\n".join(
            (
                str(request.method).upper(),
                steps._normalize_url_path(parts.path),
                query,
                self.canonical_headers(headers) + "\n",
                self.signed_headers(headers),
                body_checksum,
            )
        )

    def signature(self, string_to_sign: str, request: AWSRequest) -> str:
        steps: Any = self
        key = _signing_key(
            self.credentials.secret_key,
            request.context["timestamp"][0:8],
            steps._region_name,
            steps._service_name,
        )
        return hmac.new(key, string_to_sign.encode("utf-8"), sha256).hexdigest()


class FastS3SigV4Auth(FastSigV4Auth, S3SigV4Auth):
    """S3's rules (payload header, unnormalized paths) over the fast steps."""


@lru_cache(maxsize=64)
def _canonical_path(url: str) -> str:
    """botocore's canonical URI of ``url`` (SigV4Auth._normalize_url_path)."""
    return quote(normalize_url_path(urlsplit(url).path), safe="/~")


def signed_post_headers(
    keys: Any,
    service: str,
    region: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    timestamp: str | None = None,
) -> dict[str, str]:
    """The headers botocore's ``SigV4Auth.add_auth`` gives a POST of ``body`` to ``url``
    (no query string) with ``headers``: those, then X-Amz-Date, X-Amz-Security-Token
    (with a session token) and Authorization. ``keys``: frozen credentials
    (``get_frozen_credentials()``), read per request; ``headers`` carries none of those
    four. tests/unit/test_signing.py requires botocore's result."""
    payload = sha256(body).hexdigest() if body else EMPTY_SHA256_HASH
    return _signed(
        keys,
        service,
        region,
        "POST",
        url,
        _canonical_path(url),
        headers,
        payload,
        timestamp=timestamp,
    )


def signed_s3_headers(
    keys: Any,
    service: str,
    region: str,
    method: str,
    url: str,
    headers: Mapping[str, str],
    payload: str,
    *,
    timestamp: str | None = None,
) -> dict[str, str]:
    """The headers botocore's ``S3SigV4Auth.add_auth`` gives a request to ``url`` (no query
    string) whose payload hash is ``payload`` (the body's SHA-256, or one of botocore's
    ``UNSIGNED-PAYLOAD`` markers): as ``signed_post_headers``, plus X-Amz-Content-SHA256
    after the token, over S3's unnormalized path."""
    path = urlsplit(url).path  # S3 signs its path as it is (S3SigV4Auth)
    return _signed(
        keys,
        service,
        region,
        method,
        url,
        path,
        headers,
        payload,
        s3_payload=True,
        timestamp=timestamp,
    )


def _signed(
    keys: Any,
    service: str,
    region: str,
    method: str,
    url: str,
    path: str,
    headers: Mapping[str, str],
    payload: str,
    *,
    s3_payload: bool = False,
    timestamp: str | None = None,
) -> dict[str, str]:
    if keys is None:
        raise NoCredentialsError()
    stamp = timestamp or datetime.now(UTC).strftime(SIGV4_TIMESTAMP)
    signed = dict(headers)
    signed["X-Amz-Date"] = stamp
    if keys.token:
        signed["X-Amz-Security-Token"] = keys.token
    if s3_payload:
        signed["X-Amz-Content-SHA256"] = payload
    to_sign = {}
    for name, value in signed.items():
        lname = name.lower()
        if lname not in _BLACKLIST:
            to_sign[lname] = value
    if "host" not in to_sign:
        to_sign["host"] = host_for(url)
    names = sorted(to_sign)
    signed_names = ";".join(names)
    canonical = "\n".join(
        (
            method,
            path,
            "",
            "".join(f"{name}:{' '.join(to_sign[name].split())}\n" for name in names),
            signed_names,
            payload,
        )
    )
    scope = f"{stamp[0:8]}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join(
        ("AWS4-HMAC-SHA256", stamp, scope, sha256(canonical.encode("utf-8")).hexdigest())
    )
    key = _signing_key(keys.secret_key, stamp[0:8], region, service)
    signature = hmac.new(key, string_to_sign.encode("utf-8"), sha256).hexdigest()
    signed["Authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={keys.access_key}/{scope}, "
        f"SignedHeaders={signed_names}, Signature={signature}"
    )
    return signed


FAST: dict[type, type] = {SigV4Auth: FastSigV4Auth, S3SigV4Auth: FastS3SigV4Auth}


def faster(auth: object) -> object:
    """The same signer, as its fast subclass when there is one (exact types only)."""
    fast = FAST.get(type(auth))
    if fast is not None:
        auth.__class__ = fast
    return auth


def install(client: Any) -> None:
    """Have ``client`` sign standard SigV4 requests with the fast subclasses."""
    signer = botocompat.request_signer(client)
    get_auth_instance = signer.get_auth_instance

    async def fast_auth_instance(*args: Any, **kwargs: Any) -> object:
        return faster(await get_auth_instance(*args, **kwargs))

    signer.get_auth_instance = fast_auth_instance

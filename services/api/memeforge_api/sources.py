"""A template's bytes fetched from a client's URL, through the SSRF guard (egress.py).

Every hop of a redirect chain goes through ``egress.request`` again, so each target is
checked before it is connected to; at most MAX_SOURCE_REDIRECTS hops, all within one
total timeout, each body capped at the upload limit while it streams. What the bytes are
is decided later, from the bytes (images.inspect_image), never from Content-Type.
"""

from __future__ import annotations

import asyncio

from memeforge_common.egress import (
    EgressPolicy,
    ForbiddenAddress,
    InvalidTarget,
    ResponseTooLarge,
    Unreachable,
    request,
)
from memeforge_common.limits import MAX_SOURCE_REDIRECTS

from memeforge_api.problems import Problem

_UNREACHABLE = "Template source unreachable"


async def fetch_source(url: str, *, policy: EgressPolicy, max_bytes: int) -> bytes:
    """The body ``url`` ends at, or a Problem: ``source-unreachable`` (422),
    ``source-forbidden-address`` (422), ``invalid-source-url`` (422), ``source-too-large``
    (413)."""
    try:
        async with asyncio.timeout(policy.total_timeout_s):
            return await _follow(url, policy=policy, max_bytes=max_bytes)
    except TimeoutError as err:
        detail = f"no complete answer within {policy.total_timeout_s:g} s"
        raise Problem(422, "source-unreachable", _UNREACHABLE, detail) from err
    except ForbiddenAddress as err:
        title = "Template source address not allowed"
        raise Problem(422, "source-forbidden-address", title, str(err)) from err
    except InvalidTarget as err:
        raise Problem(422, "invalid-source-url", "Invalid template source URL", str(err)) from err
    except ResponseTooLarge as err:
        raise Problem(413, "source-too-large", "Template source too large", str(err)) from err
    except Unreachable as err:
        raise Problem(422, "source-unreachable", _UNREACHABLE, str(err)) from err


async def _follow(url: str, *, policy: EgressPolicy, max_bytes: int) -> bytes:
    for _ in range(MAX_SOURCE_REDIRECTS + 1):
        resp = await request(
            "GET", url, policy=policy, max_bytes=max_bytes, headers={"Accept": "image/*"}
        )
        if resp.redirect_url is None:
            if resp.status != 200:
                raise Unreachable(f"the source answered HTTP {resp.status}")
            return resp.body
        url = resp.redirect_url
    raise Unreachable(f"more than {MAX_SOURCE_REDIRECTS} redirects")

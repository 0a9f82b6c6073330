"""The SSRF guard against a real HTTP origin process on loopback (allow-listed)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from memeforge_common.egress import (
    EgressPolicy,
    ForbiddenAddress,
    ResponseTooLarge,
    Unreachable,
    request,
)

from tests.support.origin import PNG, origin_server

pytestmark = pytest.mark.integration

ALLOW_LOOPBACK = EgressPolicy(allow=(ipaddress.ip_network("127.0.0.0/8"),))


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("origin") / "origin.log"
    with origin_server(str(log)) as base:
        yield base


async def test_an_allow_listed_origin_answers(origin: str) -> None:
    resp = await request("GET", f"{origin}/image.png", policy=ALLOW_LOOPBACK, max_bytes=1 << 20)
    assert (resp.status, resp.body) == (200, PNG)


async def test_without_the_allow_list_loopback_is_refused_by_literal_and_by_name(
    origin: str,
) -> None:
    port = urlsplit(origin).port
    for url in (f"{origin}/image.png", f"http://localhost:{port}/image.png"):
        with pytest.raises(ForbiddenAddress):
            await request("GET", url, policy=EgressPolicy(), max_bytes=1 << 20)


async def test_redirects_are_returned_not_followed(origin: str) -> None:
    resp = await request("GET", f"{origin}/redirect/2", policy=ALLOW_LOOPBACK, max_bytes=1024)
    assert resp.status == 302
    assert resp.redirect_url == f"{origin}/redirect/1"


async def test_a_body_over_the_cap_is_cut_off_while_streaming(origin: str) -> None:
    with pytest.raises(ResponseTooLarge) as caught:
        await request("GET", f"{origin}/endless", policy=ALLOW_LOOPBACK, max_bytes=256 * 1024)
    assert caught.value.status == 200


async def test_a_slow_drip_ends_at_the_total_timeout(origin: str) -> None:
    policy = EgressPolicy(allow=ALLOW_LOOPBACK.allow, total_timeout_s=1.0)
    with pytest.raises(Unreachable, match="did not answer"):
        await request("GET", f"{origin}/drip", policy=policy, max_bytes=2000)


async def test_it_connects_to_the_address_it_checked_and_keeps_the_host_name(
    origin: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README "Templates from a URL": "the connection goes to the address that was checked".
    DNS rebinding: the first answer is loopback (allowed), later ones the metadata
    endpoint. One lookup is made, and the connection goes to the checked address."""
    port = urlsplit(origin).port
    assert port is not None
    answers = iter(["127.0.0.1"] + ["169.254.169.254"] * 5)
    calls: list[str] = []

    async def rebinding(host: str, port: int, **_: Any) -> list[Any]:
        calls.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", rebinding)
    url = f"http://rebind.test:{port}/echo-host"
    resp = await request("GET", url, policy=ALLOW_LOOPBACK, max_bytes=1024)
    assert (resp.status, resp.body) == (200, f"rebind.test:{port}".encode())
    assert calls == ["rebind.test"]

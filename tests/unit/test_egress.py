"""The SSRF guard's decisions, with DNS answered in-process (no socket is ever opened)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any

import pytest
from memeforge_common.egress import (
    EgressPolicy,
    EgressResponse,
    ForbiddenAddress,
    InvalidTarget,
    Unreachable,
    check_url,
    refusal,
    request,
)
from memeforge_common.settings import Settings

pytestmark = pytest.mark.unit

LOOPBACK_ONLY = EgressPolicy(allow=(ipaddress.ip_network("127.0.0.0/8"),))


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("100.127.255.254", "carrier-grade NAT"),
        ("224.0.0.251", "multicast"),
        ("239.255.255.250", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("fc00::1", "unique local"),
        ("fd12:3456::1", "unique local"),
        ("240.0.0.1", "reserved"),
        ("192.0.2.10", "private"),  # documentation range: never a real target
        ("255.255.255.255", "reserved"),
        # IPv4 inside IPv6 is judged as the IPv4 address.
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "link-local"),
        ("::ffff:10.1.2.3", "private"),
        ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 of 169.254.169.254
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
    ],
)
def test_non_public_addresses_are_refused_with_their_reason(address: str, reason: str) -> None:
    """README "Templates from a URL": the addresses the SSRF guard refuses."""
    assert refusal(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "1.1.1.1", "100.128.0.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"]
)
def test_public_addresses_pass(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is None


def test_the_allow_list_admits_only_its_networks_and_judges_a_mapped_address_as_ipv4() -> None:
    assert refusal(ipaddress.ip_address("127.0.0.1"), LOOPBACK_ONLY.allow) is None
    assert refusal(ipaddress.ip_address("::ffff:127.0.0.1"), LOOPBACK_ONLY.allow) is None
    assert refusal(ipaddress.ip_address("::1"), LOOPBACK_ONLY.allow) == "loopback"
    assert refusal(ipaddress.ip_address("10.0.0.1"), LOOPBACK_ONLY.allow) == "private"


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/a.png",
        "file:///etc/passwd",
        "gopher://x/",
        "http://",
        "/relative.png",
        "http://example.com:0/",
        "http://example.com:99999/",
    ],
)
def test_only_absolute_http_urls_with_a_host_are_targets(url: str) -> None:
    with pytest.raises(InvalidTarget):
        check_url(url, EgressPolicy())


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "https://[::1]:8443/",
        "http://[::ffff:127.0.0.1]/",
        "http://10.0.0.1/",
        "http://[fd00::1]/",
    ],
)
def test_ip_literals_are_judged_before_any_connection(url: str) -> None:
    with pytest.raises(ForbiddenAddress):
        check_url(url, EgressPolicy())


@pytest.mark.parametrize(
    "host", ["2130706433", "127.1", "0x7f.0.0.1", "0177.0.0.1", "017700000001", "0", "10.1"]
)
def test_legacy_numeric_ipv4_forms_are_judged_as_the_address_they_mean(host: str) -> None:
    with pytest.raises(ForbiddenAddress):
        check_url(f"http://{host}/", EgressPolicy())


def test_a_legacy_numeric_form_of_a_public_address_is_refused_as_not_canonical() -> None:
    with pytest.raises(InvalidTarget, match="canonical"):
        check_url("http://134744072/", EgressPolicy())  # 8.8.8.8


def test_a_name_is_left_to_resolution_and_a_public_literal_passes() -> None:
    assert check_url("https://images.example.com/a.png", EgressPolicy()) == "images.example.com"
    assert check_url("http://8.8.8.8/", EgressPolicy()) == "8.8.8.8"
    assert check_url("http://127.0.0.1:9/", LOOPBACK_ONLY) == "127.0.0.1"


def _answers(*addresses: str) -> Any:
    """A getaddrinfo that answers every name with ``addresses``, and counts its calls."""

    async def getaddrinfo(host: str, port: int, **_: Any) -> list[Any]:
        getaddrinfo.calls += 1  # type: ignore[attr-defined]
        out = []
        for address in addresses:
            if ":" in address:
                out.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0)))
            else:
                out.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port)))
        return out

    getaddrinfo.calls = 0  # type: ignore[attr-defined]
    return getaddrinfo


@pytest.mark.parametrize(
    "answers",
    [("10.0.0.1",), ("169.254.169.254",), ("::1",), ("127.0.0.1",), ("93.184.216.34", "10.0.0.7")],
)
async def test_a_name_resolving_to_any_forbidden_address_is_refused(
    monkeypatch: pytest.MonkeyPatch, answers: tuple[str, ...]
) -> None:
    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", _answers(*answers))
    with pytest.raises(ForbiddenAddress, match="resolves to"):
        await request("GET", "http://rebind.example/x", policy=EgressPolicy(), max_bytes=10)


async def test_a_name_that_does_not_resolve_is_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    async def fails(*_: Any, **__: Any) -> list[Any]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", fails)
    with pytest.raises(Unreachable, match="cannot resolve"):
        await request("GET", "http://nowhere.invalid/", policy=EgressPolicy(), max_bytes=10)


def test_redirect_url_is_absolute_and_only_for_3xx() -> None:
    moved = EgressResponse("http://a.example/x/y", 302, {"Location": "../z"}, b"")
    assert moved.redirect_url == "http://a.example/z"
    ok = EgressResponse("http://a.example/x", 200, {"Location": "/z"}, b"")
    assert ok.redirect_url is None


def test_the_allow_list_setting_is_comma_separated_networks() -> None:
    settings = Settings(egress_allow="127.0.0.1/32, ::1")  # type: ignore[arg-type]
    assert EgressPolicy.from_settings(settings).allow == (
        ipaddress.ip_network("127.0.0.1/32"),
        ipaddress.ip_network("::1/128"),
    )
    assert Settings().egress_allow == ()

"""POST /templates with source_url: the api in-process against the emulator, fetching from
a real origin process on loopback (allow-listed unless a test says otherwise)."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from memeforge_api.app import create_app
from memeforge_common.apikeys import ALL_SCOPES, KeyStore
from memeforge_common.aws import AwsClients
from memeforge_common.settings import Settings

from tests.support.images import gradient
from tests.support.origin import origin_server
from tests.support.settings import on_resources

pytestmark = pytest.mark.integration

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)
UPLOAD_LIMIT = 200_000


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with origin_server(str(tmp_path_factory.mktemp("origin") / "origin.log")) as base:
        yield base


async def _client(settings: Settings, aws: AwsClients) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        token = await KeyStore(aws.dynamodb, settings.table).create("acme", "sources", ALL_SCOPES)
        headers = {"Authorization": f"Bearer {token.token}"}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://api", headers=headers
        ) as http:
            yield http


def _settings(resources: Settings, **overrides: Any) -> Settings:
    return on_resources(resources, max_upload_bytes=UPLOAD_LIMIT, egress_timeout_s=2.0, **overrides)


@pytest.fixture
async def client(resources: Settings, aws: AwsClients) -> AsyncIterator[httpx.AsyncClient]:
    async for http in _client(_settings(resources, egress_allow=LOOPBACK), aws):
        yield http


@pytest.fixture
async def guarded(resources: Settings, aws: AwsClients) -> AsyncIterator[httpx.AsyncClient]:
    """The api as deployed: no allow-list."""
    async for http in _client(_settings(resources), aws):
        yield http


def _from_url(name: str, url: str) -> dict[str, Any]:
    return {"data": {"name": name, "source_url": url}}


async def test_a_template_from_a_url_is_registered_with_sniffed_facts(
    client: httpx.AsyncClient, origin: str
) -> None:
    """README "Templates from a URL"."""
    created = await client.post("/templates", **_from_url("From URL", f"{origin}/image.png"))
    assert created.status_code == 201, created.text
    assert created.headers["location"] == "/templates/from-url"
    view = (await client.get("/templates/from-url")).json()
    assert (view["content_type"], view["width"], view["height"]) == ("image/png", 64, 48)


async def test_three_redirects_are_followed_and_a_fourth_is_refused(
    client: httpx.AsyncClient, origin: str
) -> None:
    ok = await client.post("/templates", **_from_url("Three hops", f"{origin}/redirect/3"))
    assert ok.status_code == 201, ok.text
    four = await client.post("/templates", **_from_url("Four hops", f"{origin}/redirect/4"))
    assert (four.status_code, four.json()["code"]) == (422, "source-unreachable")
    assert "redirects" in four.json()["detail"]


@pytest.mark.parametrize(
    ("target", "code"),
    [
        ("http://169.254.169.254/latest/meta-data/", "source-forbidden-address"),
        ("http://10.0.0.1/image.png", "source-forbidden-address"),
        ("http://[::ffff:192.168.0.1]/image.png", "source-forbidden-address"),
        ("file:///etc/passwd", "invalid-source-url"),
    ],
)
async def test_a_redirect_to_a_forbidden_target_is_refused(
    client: httpx.AsyncClient, origin: str, target: str, code: str
) -> None:
    """README "Templates from a URL": "At most 3 redirects, each checked again"."""
    url = f"{origin}/redirect-to?url={quote(target, safe='')}"
    refused = await client.post("/templates", **_from_url("Bounce", url))
    assert refused.headers["content-type"] == "application/problem+json"
    assert (refused.status_code, refused.json()["code"]) == (422, code), refused.text
    assert (await client.get("/templates/bounce")).status_code == 404


async def test_without_the_allow_list_a_loopback_source_is_forbidden(
    guarded: httpx.AsyncClient, origin: str
) -> None:
    refused = await guarded.post("/templates", **_from_url("Local", f"{origin}/image.png"))
    assert (refused.status_code, refused.json()["code"]) == (422, "source-forbidden-address")


async def test_a_slow_drip_ends_at_the_total_timeout(
    client: httpx.AsyncClient, origin: str
) -> None:
    """README "Templates from a URL": "the whole fetch has MEMEFORGE_EGRESS_TIMEOUT_S"."""
    slow = await client.post("/templates", **_from_url("Drip", f"{origin}/drip"))
    assert (slow.status_code, slow.json()["code"]) == (422, "source-unreachable"), slow.text


async def test_an_endless_body_is_cut_at_the_upload_limit(
    client: httpx.AsyncClient, origin: str
) -> None:
    """README "Templates from a URL": "the body is cut off ... while it streams"."""
    big = await client.post("/templates", **_from_url("Endless", f"{origin}/endless"))
    assert (big.status_code, big.json()["code"]) == (413, "source-too-large"), big.text


async def test_the_content_type_header_is_not_trusted(
    client: httpx.AsyncClient, origin: str
) -> None:
    html = await client.post("/templates", **_from_url("Html", f"{origin}/html-as-png"))
    assert (html.status_code, html.json()["code"]) == (422, "invalid-image"), html.text
    bmp = await client.post("/templates", **_from_url("Bmp", f"{origin}/bmp-as-png"))
    assert (bmp.status_code, bmp.json()["code"]) == (415, "unsupported-image-format"), bmp.text


async def test_a_source_that_answers_an_error_status_is_unreachable(
    client: httpx.AsyncClient, origin: str
) -> None:
    gone = await client.post("/templates", **_from_url("Gone", f"{origin}/no-such-image"))
    assert (gone.status_code, gone.json()["code"]) == (422, "source-unreachable")
    assert "404" in gone.json()["detail"]


async def test_exactly_one_of_file_and_source_url(client: httpx.AsyncClient, origin: str) -> None:
    both = await client.post(
        "/templates",
        data={"name": "Both", "source_url": f"{origin}/image.png"},
        files={"file": ("b.png", gradient(16, 16, "PNG"), "image/png")},
    )
    neither = await client.post("/templates", data={"name": "Neither"})
    for answer in (both, neither):
        assert (answer.status_code, answer.json()["code"]) == (422, "invalid-template-source")

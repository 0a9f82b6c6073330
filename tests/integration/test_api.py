"""The API app in-process, over its ASGI interface, against the real emulator over HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from memeforge_api.app import create_app
from memeforge_common.apikeys import ALL_SCOPES, KeyStore
from memeforge_common.aws import AwsClients
from memeforge_common.items import MemeStore
from memeforge_common.models import RequestMessage
from memeforge_common.queues import queue_url
from memeforge_common.settings import Settings
from prometheus_client import generate_latest

from devenv.drills.tcpproxy import TcpProxy
from devenv.run.emulator import Emulator
from tests.support.images import animated, gradient
from tests.support.memes import put_done_meme
from tests.support.settings import unique_settings

pytestmark = pytest.mark.integration


@pytest.fixture
async def settings(resources: Settings) -> Settings:
    return unique_settings(
        bucket=resources.bucket,
        table=resources.table,
        request_queue=resources.request_queue,
        render_queue=resources.render_queue,
        max_upload_bytes=200_000,
    )


@pytest.fixture
async def client(settings: Settings, aws: AwsClients) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        token = await KeyStore(aws.dynamodb, settings.table).create(
            "acme", "integration tests", ALL_SCOPES
        )
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {token.token}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://api", headers=headers
        ) as http:
            yield http


def _upload(name: str, data: bytes, *, template_id: str | None = None) -> dict[str, object]:
    form = {"name": name} | ({"id": template_id} if template_id else {})
    return {"data": form, "files": {"file": (f"{name}.png", data, "image/png")}}


async def test_pagination_returns_every_template_exactly_once(client: httpx.AsyncClient) -> None:
    """README "cursor pagination: pass next_cursor back as ?cursor="."""
    small = gradient(32, 24, "PNG")
    names = [f"Template {i:02d}" for i in range(23)]
    responses = await asyncio.gather(
        *(client.post("/templates", **_upload(n, small)) for n in names)
    )
    assert [r.status_code for r in responses] == [201] * len(names)

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params = {"limit": "5"} | ({"cursor": cursor} if cursor else {})
        page = (await client.get("/templates", params=params)).json()
        assert len(page["items"]) <= 5
        seen += [t["id"] for t in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages >= 5
    assert sorted(seen) == sorted(f"template-{i:02d}" for i in range(23))
    assert len(seen) == len(set(seen))
    first = (await client.get("/templates/template-00")).json()
    assert (first["name"], first["width"], first["height"]) == ("Template 00", 32, 24)
    assert first["content_type"] == "image/png"


async def test_pagination_ends_cleanly_on_an_exact_multiple_of_the_limit(
    client: httpx.AsyncClient,
) -> None:
    """README: "cursor pagination: pass next_cursor back as ?cursor=": with 10 templates
    and limit 5, two full pages, the second without a cursor to an empty third."""
    small = gradient(32, 24, "PNG")
    names = [f"Exact {i:02d}" for i in range(10)]
    responses = await asyncio.gather(
        *(client.post("/templates", **_upload(n, small)) for n in names)
    )
    assert [r.status_code for r in responses] == [201] * len(names)
    first = (await client.get("/templates", params={"limit": "5"})).json()
    assert len(first["items"]) == 5
    assert first["next_cursor"] is not None
    second = (
        await client.get("/templates", params={"limit": "5", "cursor": first["next_cursor"]})
    ).json()
    assert len(second["items"]) == 5
    assert second["next_cursor"] is None
    seen = [t["id"] for t in first["items"] + second["items"]]
    assert sorted(seen) == sorted(f"exact-{i:02d}" for i in range(10))


async def test_a_meme_rendered_without_a_thumbnail_has_none_to_download(
    client: httpx.AsyncClient, aws: AwsClients, settings: Settings
) -> None:
    """GET /memes/{id}/thumbnail of a DONE meme made without thumbnail_side is a typed 404,
    while its image is there."""
    meme_id = await put_done_meme(aws, settings, b"image bytes", tenant="acme")
    image = await client.get(f"/memes/{meme_id}/image")
    assert image.status_code == 307
    thumbnail = await client.get(f"/memes/{meme_id}/thumbnail")
    assert thumbnail.status_code == 404
    assert thumbnail.headers["content-type"] == "application/problem+json"
    assert thumbnail.json()["code"] == "no-thumbnail"


async def test_an_idempotency_key_is_free_again_once_its_record_expired(
    settings: Settings, aws: AwsClients
) -> None:
    """README: "POST /memes with Idempotency-Key returns the same meme for the same body";
    records expire (MEMEFORGE_IDEMPOTENCY_TTL_S), and an expired one no longer replays
    even before DynamoDB's TTL has deleted it."""
    short = settings.model_copy(update={"idempotency_ttl_s": 1})  # below the 60 s floor
    app = create_app(short)
    body = {"template_id": "anything", "top": "once"}
    key = await KeyStore(aws.dynamodb, settings.table).create("acme", "expiry", ALL_SCOPES)
    headers = {
        "Idempotency-Key": f"expiry-{uuid.uuid4().hex}",
        "Authorization": f"Bearer {key.token}",
    }
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            first = await http.post("/memes", json=body, headers=headers)
            replay = await http.post("/memes", json=body, headers=headers)
            assert first.status_code == replay.status_code == 202
            assert replay.json()["id"] == first.json()["id"]
            assert replay.headers["idempotent-replayed"] == "true"
            # Expiry is checked to the second: the record is past it within 3 s.
            await asyncio.sleep(3.1)
            fresh = await http.post("/memes", json=body, headers=headers)
    assert fresh.status_code == 202
    assert fresh.json()["id"] != first.json()["id"]
    assert "idempotent-replayed" not in fresh.headers


async def test_upload_errors_are_typed_problems(client: httpx.AsyncClient) -> None:
    """README "Upload your own template (... 10 MiB max)": typed problems."""
    text = await client.post("/templates", **_upload("notes", b"just some text, not an image"))
    assert text.status_code == 422
    assert text.headers["content-type"] == "application/problem+json"
    assert text.json()["code"] == "invalid-image"

    bmp = await client.post("/templates", **_upload("bitmap", _bmp()))
    assert bmp.status_code == 415
    assert bmp.json()["code"] == "unsupported-image-format"

    big = await client.post("/templates", **_upload("huge", b"\xff" * 300_000))
    assert big.status_code == 413
    assert big.headers["content-type"] == "application/problem+json"
    assert big.json()["code"] == "payload-too-large"

    truncated = gradient(64, 64, "PNG")[:-40]
    broken = await client.post("/templates", **_upload("broken", truncated))
    assert broken.status_code == 422
    assert broken.json()["code"] == "invalid-image"

    ok = await client.post("/templates", **_upload("dup", gradient(16, 16, "PNG")))
    again = await client.post("/templates", **_upload("dup", gradient(16, 16, "PNG")))
    assert (ok.status_code, again.status_code) == (201, 409)
    assert again.json()["code"] == "template-exists"


async def test_meme_errors_are_typed_problems(client: httpx.AsyncClient) -> None:
    missing = await client.get("/memes/" + "0" * 32)
    assert missing.status_code == 404
    assert missing.json() | {"instance": None} == {
        "type": "/problems/meme-not-found",
        "title": "No such meme",
        "status": 404,
        "code": "meme-not-found",
        "detail": f"meme {'0' * 32!r}",
        "instance": None,
    }
    bad_id = await client.get("/memes/not-an-id")
    no_text = await client.post("/memes", json={"template_id": "x", "top": " ", "bottom": ""})
    assert no_text.headers["content-type"] == "application/problem+json"
    too_long = await client.post("/memes", json={"template_id": "x", "top": "a" * 501})
    unknown_field = await client.post("/memes", json={"template_id": "x", "top": "a", "x": 1})
    for invalid in (bad_id, no_text, too_long, unknown_field):
        assert (invalid.status_code, invalid.json()["code"]) == (422, "validation-failed")
        assert invalid.json()["errors"], invalid.text


def _readme_error_codes(repo_root: Path) -> dict[str, int]:
    """The ``NNN code`` pairs of the README's paragraph on errors."""
    readme = (repo_root / "README.md").read_text()
    paragraph = readme[readme.index("Errors are [RFC 9457]") :].split("\n\n", 1)[0]
    return {code: int(status) for status, code in re.findall(r"`(\d{3}) ([a-z-]+)`", paragraph)}


async def _aws_unavailable(
    settings: Settings, emulator: Emulator, headers: dict[str, str]
) -> httpx.Response:
    """GET a meme from an api whose AWS endpoint stops answering after start-up (with a
    valid key: checking it is the first call that finds AWS gone)."""
    proxies = [await TcpProxy.in_front_of(url) for url in emulator.env.values()]
    endpoints = dict(zip(emulator.env, (url for _, url in proxies), strict=True))
    saved = {key: os.environ[key] for key in endpoints}
    os.environ.update(endpoints)
    try:
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            for proxy, _ in proxies:
                proxy.pause(3600)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://api", headers=headers
            ) as http:
                response = await http.get("/memes/" + "0" * 32)
            assert sum(proxy.refused for proxy, _ in proxies) > 0  # really cut off
            return response
    finally:
        os.environ.update(saved)
        for proxy, _ in proxies:
            await proxy.close()


async def _upload_twice(client: httpx.AsyncClient, name: str) -> httpx.Response:
    first = await client.post("/templates", **_upload(name, gradient(16, 16, "PNG")))
    assert first.status_code == 201, first.text
    return await client.post("/templates", **_upload(name, gradient(20, 16, "PNG")))


async def test_an_animated_upload_records_frames_duration_and_loop(
    client: httpx.AsyncClient,
) -> None:
    """README "Animated templates": the template shows its frames, duration and loop."""
    for fmt in ("GIF", "WEBP"):
        data = animated(fmt, count=7, durations=90, loop=4)
        created = await client.post("/templates", **_upload(f"moving {fmt.lower()}", data))
        assert created.status_code == 201, created.text
        shown = (await client.get(f"/templates/moving-{fmt.lower()}")).json()
        assert (shown["frames"], shown["duration_ms"], shown["loop"]) == (7, 630, 4)
    still = await client.post("/templates", **_upload("still one", gradient(32, 24, "GIF")))
    assert (still.json()["frames"], still.json()["duration_ms"], still.json()["loop"]) == (
        1,
        0,
        None,
    )


async def test_animations_over_a_cap_are_refused_before_they_are_stored(
    client: httpx.AsyncClient,
) -> None:
    """README "Animated templates": too-many-frames, animation-too-long, image-too-large."""
    cases = {
        "too-many-frames": animated(count=301, size=(16, 16), durations=20),
        "animation-too-long": animated(count=4, durations=10_000),
        "image-too-large": animated(count=300, size=(400, 400), durations=20),
    }
    for code, data in cases.items():
        response = await client.post("/templates", **_upload(code, data))
        assert response.headers["content-type"] == "application/problem+json"
        assert (response.status_code, response.json()["code"]) == (422, code)
        assert (await client.get(f"/templates/{code}")).status_code == 404


async def test_every_error_code_the_readme_lists_is_what_the_api_answers(
    client: httpx.AsyncClient, settings: Settings, emulator: Emulator, repo_root: Path
) -> None:
    """README: "Errors are RFC 9457 application/problem+json with a machine-readable code,
    e.g. 404 meme-not-found, 413 payload-too-large, ... and 503 aws-unavailable with
    Retry-After while AWS cannot be reached." Each listed code, as a client triggers it."""
    created = await client.post("/memes", json={"template_id": "anything", "top": "hi"})
    triggers: dict[str, Callable[[], Awaitable[httpx.Response]]] = {
        "meme-not-found": lambda: client.get("/memes/" + "0" * 32),
        "payload-too-large": lambda: client.post(
            "/templates", **_upload("huge", b"\xff" * 300_000)
        ),
        "unsupported-image-format": lambda: client.post("/templates", **_upload("bitmap", _bmp())),
        "validation-failed": lambda: client.post(
            "/memes", json={"template_id": "x", "top": "a", "x": 1}
        ),
        "meme-not-ready": lambda: client.get(f"/memes/{created.json()['id']}/image"),
        "template-exists": lambda: _upload_twice(client, "readme-dup"),
        "invalid-cursor": lambda: client.get("/templates", params={"cursor": "junk"}),
        "aws-unavailable": lambda: _aws_unavailable(
            settings, emulator, {"Authorization": client.headers["Authorization"]}
        ),
    }
    listed = _readme_error_codes(repo_root)
    assert set(listed) == set(triggers), "README and this test list different codes"
    for code, trigger in triggers.items():
        response = await trigger()
        assert response.headers["content-type"] == "application/problem+json", code
        problem = response.json()
        assert (response.status_code, problem["code"]) == (listed[code], code), response.text
        assert problem["status"] == listed[code]
        assert problem["type"] == f"/problems/{code}"
        if code == "aws-unavailable":
            assert int(response.headers["retry-after"]) > 0


async def test_created_meme_is_pending_and_not_ready_for_download(
    client: httpx.AsyncClient,
) -> None:
    """README "Caption it": 202 PENDING, and 409 meme-not-ready until DONE."""
    created = await client.post("/memes", json={"template_id": "anything", "top": "hi"})
    assert created.status_code == 202
    meme = created.json()
    assert meme["state"] == "PENDING"
    assert created.headers["location"] == f"/memes/{meme['id']}"
    # Long-poll returns after the wait when nothing moves it (no consumer runs here).
    polled = await client.get(f"/memes/{meme['id']}", params={"wait": "0.3"})
    assert polled.json()["state"] == "PENDING"
    image = await client.get(f"/memes/{meme['id']}/image")
    assert image.status_code == 409
    assert image.json()["code"] == "meme-not-ready"


def _bmp() -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(out, "BMP")
    return out.getvalue()


async def test_idempotency_key_replays_the_same_meme_once(
    client: httpx.AsyncClient, aws: AwsClients, settings: Settings
) -> None:
    """README "Idempotency": same meme (Idempotent-Replayed: true), 409 for another body."""
    body = {"template_id": "anything", "top": "once", "bottom": "only"}
    headers = {"Idempotency-Key": "order-42"}
    first, second = [await client.post("/memes", json=body, headers=headers) for _ in range(2)]
    assert (first.status_code, second.status_code) == (202, 202)
    assert first.json()["id"] == second.json()["id"]
    assert "idempotent-replayed" not in first.headers
    assert second.headers["idempotent-replayed"] == "true"
    concurrent = await asyncio.gather(
        *(client.post("/memes", json=body, headers=headers) for _ in range(5))
    )
    assert {r.json()["id"] for r in concurrent} == {first.json()["id"]}

    conflict = await client.post("/memes", json=body | {"top": "changed"}, headers=headers)
    assert conflict.status_code == 409
    assert conflict.json()["code"] == "idempotency-key-reused"

    other = await client.post("/memes", json=body, headers={"Idempotency-Key": "order-43"})
    assert other.json()["id"] != first.json()["id"]

    # One request message per distinct meme, however many times the key was replayed.
    url = await queue_url(aws.sqs, settings.request_queue)
    ids: list[str] = []
    while batch := (
        await aws.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    ).get("Messages", []):
        ids += [RequestMessage.model_validate_json(m["Body"]).meme_id for m in batch]
    assert sorted(ids) == sorted([first.json()["id"], other.json()["id"]])


async def test_templates_carry_default_boxes_that_captions_fill(
    client: httpx.AsyncClient, aws: AwsClients, settings: Settings
) -> None:
    """README "Templates may carry their own default boxes"; captions fill them."""
    layout = [
        {"x": 0.05, "y": 0.05, "width": 0.9, "height": 0.2, "align": "left"},
        {"x": 0.05, "y": 0.4, "width": 0.9, "height": 0.2, "color": "#ffcc00"},
        {"x": 0.05, "y": 0.75, "width": 0.9, "height": 0.2},
    ]
    upload = _upload("Three Panel", gradient(90, 120, "PNG"))
    upload["data"] = {**upload["data"], "boxes": json.dumps(layout)}  # type: ignore[dict-item]
    created = await client.post("/templates", **upload)
    assert created.status_code == 201, created.text
    view = (await client.get("/templates/three-panel")).json()
    assert view["classic_layout"] is False
    assert [(b["y"], b["color"]) for b in view["boxes"]] == [
        (0.05, "#ffffff"),
        (0.4, "#ffcc00"),
        (0.75, "#ffffff"),
    ]

    meme = await client.post(
        "/memes", json={"template_id": "three-panel", "captions": ["one", "", "three"]}
    )
    assert meme.status_code == 202, meme.text
    item = await MemeStore(aws.dynamodb, settings.table).get(meme.json()["id"])
    assert item is not None
    assert [(b.text, b.y, b.align) for b in item.spec.boxes] == [
        ("one", 0.05, "left"),
        ("three", 0.75, "center"),
    ]

    too_many = await client.post(
        "/memes", json={"template_id": "three-panel", "captions": ["a", "b", "c", "d"]}
    )
    assert (too_many.status_code, too_many.json()["code"]) == (422, "too-many-captions")
    missing = await client.post("/memes", json={"template_id": "nope", "captions": ["a"]})
    assert (missing.status_code, missing.json()["code"]) == (404, "template-not-found")
    both = await client.post(
        "/memes", json={"template_id": "three-panel", "top": "a", "captions": ["b"]}
    )
    assert both.status_code == 422

    classic = (await client.get("/templates")).json()["items"]
    assert all(t["classic_layout"] for t in classic if t["id"] != "three-panel")


async def test_invalid_template_layouts_are_typed_problems(client: httpx.AsyncClient) -> None:
    def with_boxes(name: str, boxes: str) -> dict[str, object]:
        upload = _upload(name, gradient(16, 16, "PNG"))
        upload["data"] = {**upload["data"], "boxes": boxes}  # type: ignore[dict-item]
        return upload

    not_json = await client.post("/templates", **with_boxes("a", "[{"))
    with_text = await client.post(
        "/templates",
        **with_boxes("b", json.dumps([{"text": "x", "x": 0, "y": 0, "width": 1, "height": 1}])),
    )
    outside = await client.post(
        "/templates", **with_boxes("c", json.dumps([{"x": 2, "y": 0, "width": 1, "height": 1}]))
    )
    big_box = {
        "x": 0.1,
        "y": 0.1,
        "width": 0.5,
        "height": 0.1,
        "font": "noto-sans",
        "color": "#123456",
        "outline_color": "#654321",
        "align": "right",
        "valign": "bottom",
        "case": "none",
        "overflow": "ellipsis",
        "rotation": 12.5,
        "min_font_size": 12,
        "max_font_size": 90,
    }
    too_big = await client.post("/templates", **with_boxes("d", json.dumps([big_box] * 16)))
    codes = [r.json()["code"] for r in (not_json, with_text, outside, too_big)]
    assert codes == ["invalid-layout", "invalid-layout", "invalid-layout", "layout-too-large"]
    assert {r.status_code for r in (not_json, with_text, outside, too_big)} == {422}


async def test_metrics_count_requests_by_route_template(client: httpx.AsyncClient) -> None:
    """README "Metrics": "The api's are request latency by route template"."""
    await client.get("/memes/" + "1" * 32)
    await client.get("/memes/" + "2" * 32)
    assert (await client.get("/metrics")).status_code == 404  # not on the public port
    text = generate_latest().decode()  # what MEMEFORGE_METRICS_PORT serves
    line = next(
        line
        for line in text.splitlines()
        if line.startswith("memeforge_http_request_seconds_count")
        and 'route="/memes/{meme_id}"' in line
        and 'status="404"' in line
    )
    assert float(line.rsplit(" ", 1)[1]) >= 2
    assert "/memes/1111" not in text  # raw paths never become labels


async def test_concurrent_uploads_of_one_name_create_it_exactly_once(
    client: httpx.AsyncClient,
) -> None:
    uploads = [gradient(16 + i, 16, "PNG") for i in range(8)]
    responses = await asyncio.gather(
        *(client.post("/templates", **_upload("Contested", data)) for data in uploads)
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * 7
    assert {r.json()["code"] for r in responses if r.status_code == 409} == {"template-exists"}
    [winner] = [r.json() for r in responses if r.status_code == 201]
    stored = (await client.get("/templates/contested")).json()
    assert (stored["width"], stored["etag"]) == (winner["width"], winner["etag"])


async def test_client_input_is_answered_with_4xx_problems_never_500(
    client: httpx.AsyncClient,
) -> None:
    """docs/architecture.md invariant 10: "Client input never causes a 500"."""
    junk = await client.get("/templates", params={"cursor": "junk"})
    assert (junk.status_code, junk.json()["code"]) == (400, "invalid-cursor")
    forged = await client.get("/templates", params={"cursor": "t1.Li4vbWVtZXM"})  # "../memes"
    assert (forged.status_code, forged.json()["code"]) == (400, "invalid-cursor")

    long_name = "\U0001f600" * 200  # 200 characters, 2.4 KB once percent-encoded
    named = await client.post(
        "/templates", **_upload(long_name, gradient(16, 16, "PNG"), template_id="long-name")
    )
    assert (named.status_code, named.json()["code"]) == (422, "metadata-too-large")

    box = {"x": 0, "y": 0, "width": 1, "height": 0.5}
    over = await client.post(
        "/memes", json={"template_id": "x", "boxes": [box | {"text": "\U0001f600" * 501}]}
    )
    assert (over.status_code, over.json()["code"]) == (422, "validation-failed")
    many = await client.post(
        "/memes", json={"template_id": "x", "boxes": [box | {"text": "a"}] * 17}
    )
    assert many.status_code == 422

    for junk_bytes in (b"plain text", b"\x89PNG\r\n\x1a\n" + b"x" * 64):
        garbage = await client.post("/templates", **_upload("garbage", junk_bytes))
        assert garbage.status_code == 422
        assert "0x" not in garbage.text  # no heap address of PIL's BytesIO in the body

"""End to end through HTTP: upload, caption, wait for DONE, download, inspect pixels."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import httpx
import pytest
from PIL import Image

from devenv.run.proc import free_port, http_ok, wait_until
from devenv.run.stack import Stack
from tests.support.images import gradient, region_diff
from tests.support.memes import wait_until_settled

pytestmark = pytest.mark.e2e

WIDTH, HEIGHT = 640, 480


async def test_twenty_concurrent_memes_are_rendered(api: httpx.AsyncClient) -> None:
    template = gradient(WIDTH, HEIGHT)
    upload = await api.post(
        "/templates",
        data={"name": "E2E gradient", "id": "e2e-gradient"},
        files={"file": ("g.jpg", template, "image/jpeg")},
    )
    assert upload.status_code == 201, upload.text

    captions = [(f"top caption {i}", f"bottom number {i}") for i in range(20)]
    created = await asyncio.gather(
        *(
            api.post("/memes", json={"template_id": "e2e-gradient", "top": t, "bottom": b})
            for t, b in captions
        )
    )
    assert [r.status_code for r in created] == [202] * 20
    ids = [r.json()["id"] for r in created]
    assert len(set(ids)) == 20

    settled = await asyncio.gather(*(wait_until_settled(api, i) for i in ids))
    assert [m["state"] for m in settled] == ["DONE"] * 20, [m.get("failure") for m in settled]

    source = Image.open(io.BytesIO(template)).convert("RGB")
    for meme in settled:
        assert set(meme["state_times"]) == {"PENDING", "QUEUED", "RENDERING", "DONE"}
        assert (meme["result"]["width"], meme["result"]["height"]) == (WIDTH, HEIGHT)
        response = await api.get(f"/memes/{meme['id']}/image", follow_redirects=False)
        assert response.status_code == 307
        image_bytes = (await api.get(response.headers["location"])).content
        assert len(image_bytes) == meme["result"]["bytes"]
        image = Image.open(io.BytesIO(image_bytes))
        assert image.format == "JPEG"
        assert image.size == (WIDTH, HEIGHT)
        rendered = image.convert("RGB")
        top = (0, 0, WIDTH, int(HEIGHT * 0.22))
        middle = (0, int(HEIGHT * 0.35), WIDTH, int(HEIGHT * 0.65))
        bottom = (0, int(HEIGHT * 0.78), WIDTH, HEIGHT)
        assert region_diff(rendered, source, top) > 8
        assert region_diff(rendered, source, bottom) > 8
        assert region_diff(rendered, source, middle) < 2


async def test_missing_template_ends_failed_with_a_reason(api: httpx.AsyncClient) -> None:
    created = await api.post("/memes", json={"template_id": "no-such-template", "top": "hello"})
    assert created.status_code == 202
    meme = await wait_until_settled(api, created.json()["id"])
    assert meme["state"] == "FAILED"
    assert meme["failure"]["reason"] == "template_not_found"
    assert meme["result"] is None
    image = await api.get(f"/memes/{meme['id']}/image")
    assert image.status_code == 409


async def test_seed_templates_are_listed_and_renderable(api: httpx.AsyncClient) -> None:
    listing = (await api.get("/templates", params={"limit": 100})).json()
    ids = {t["id"] for t in listing["items"]}
    assert len(ids) >= 4
    seed = sorted(ids - {"e2e-gradient"})[0]
    created = await api.post("/memes", json={"template_id": seed, "bottom": "seeded"})
    meme = await wait_until_settled(api, created.json()["id"])
    assert meme["state"] == "DONE"


async def test_services_shut_down_cleanly(stack: Stack) -> None:
    """SIGTERM drains and exits 0 (the grace period is not needed when idle)."""
    for name in ("renderer", "consumer"):
        assert stack.services[name].poll() is None, f"{name} died during the run"
    proc = stack.start_service("renderer-extra")
    log = stack.log_path("renderer-extra")
    await asyncio.to_thread(
        wait_until,
        lambda: log.exists() and "worker started" in log.read_text(),
        timeout=60,
        what="extra renderer",
        proc=proc,
    )
    assert await asyncio.to_thread(stack.stop_service, "renderer-extra", grace=30) == 0
    assert proc.returncode == 0


async def test_state_changes_stream_as_server_sent_events(api: httpx.AsyncClient) -> None:
    listing = (await api.get("/templates", params={"limit": 1})).json()
    created = await api.post(
        "/memes", json={"template_id": listing["items"][0]["id"], "top": "streamed"}
    )
    meme_id = created.json()["id"]
    states: list[str] = []
    async with api.stream("GET", f"/memes/{meme_id}/events", params={"timeout": 60}) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        async for line in stream.aiter_lines():
            if line.startswith("data: "):
                states.append(json.loads(line[len("data: ") :])["state"])
    # The stream ends by itself after the terminal state; states only move forward.
    assert states[-1] == "DONE"
    order = ["PENDING", "QUEUED", "RENDERING", "DONE"]
    assert states == sorted(set(states), key=order.index)


async def test_custom_boxes_png_output_and_thumbnail(api: httpx.AsyncClient) -> None:
    seed = (await api.get("/templates", params={"limit": 1})).json()["items"][0]
    body = {
        "template_id": seed["id"],
        "boxes": [
            {
                "text": "left aligned",
                "x": 0.05,
                "y": 0.4,
                "width": 0.5,
                "height": 0.2,
                "align": "left",
                "case": "none",
                "color": "#ffcc00",
            },
            {"text": "rotated", "x": 0.5, "y": 0.1, "width": 0.45, "height": 0.25, "rotation": 15},
        ],
        "format": "png",
        "max_side": 400,
        "thumbnail_side": 128,
    }
    created = await api.post("/memes", json=body)
    assert created.status_code == 202, created.text
    meme = await wait_until_settled(api, created.json()["id"])
    assert meme["state"] == "DONE", meme["failure"]
    result = meme["result"]
    assert result["content_type"] == "image/png"
    assert max(result["width"], result["height"]) == 400
    assert [b["lines"] for b in result["report"]["boxes"]] == [["left aligned"], ["ROTATED"]]
    image = Image.open(
        io.BytesIO((await api.get(result["image_url"], follow_redirects=True)).content)
    )
    assert (image.format, image.size) == ("PNG", (result["width"], result["height"]))
    thumb_response = await api.get(result["thumbnail_url"], follow_redirects=True)
    thumb = Image.open(io.BytesIO(thumb_response.content))
    assert max(thumb.size) == 128


async def test_both_classic_and_custom_boxes_is_a_problem(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/memes",
        json={
            "template_id": "x",
            "top": "a",
            "boxes": [{"text": "b", "x": 0, "y": 0, "width": 1, "height": 1}],
        },
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


async def test_captions_fill_a_seed_templates_own_layout(api: httpx.AsyncClient) -> None:
    seed = (await api.get("/templates/tall-checker")).json()
    assert len(seed["boxes"]) == 3
    assert seed["classic_layout"] is False
    created = await api.post(
        "/memes", json={"template_id": "tall-checker", "captions": ["top", "middle", "bottom"]}
    )
    assert created.status_code == 202, created.text
    meme = await wait_until_settled(api, created.json()["id"])
    assert meme["state"] == "DONE", meme["failure"]
    lines = [box["lines"] for box in meme["result"]["report"]["boxes"]]
    assert lines == [["TOP"], ["MIDDLE"], ["BOTTOM"]]


async def test_one_trace_id_follows_a_meme_through_every_service(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    created = await api.post(
        "/memes",
        json={"template_id": "sunset-hills", "top": "traced"},
        headers={"traceparent": parent},
    )
    assert created.headers["traceparent"].startswith("00-0af7651916cd43dd8448eb211c80319c-")
    meme = await wait_until_settled(api, created.json()["id"])
    assert meme["state"] == "DONE"

    def traced_lines(service: str) -> list[dict[str, Any]]:
        lines = stack.log_path(service).read_text().splitlines()
        records = [json.loads(line) for line in lines if line.startswith("{")]
        return [r for r in records if r.get("trace_id") == "0af7651916cd43dd8448eb211c80319c"]

    assert any(r.get("meme_id") == meme["id"] for r in traced_lines("api"))
    assert any(r.get("meme_id") == meme["id"] for r in traced_lines("renderer"))


async def test_a_worker_serves_prometheus_metrics_when_asked(stack: Stack) -> None:
    port = free_port()
    renderer_env = stack.service_env.get("renderer", stack.env)  # its own identity, if any
    stack.service_env["renderer-metrics"] = {**renderer_env, "MEMEFORGE_METRICS_PORT": str(port)}
    proc = stack.start_service("renderer-metrics")
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        await asyncio.to_thread(wait_until, http_ok(url), timeout=60, what="metrics", proc=proc)
        async with httpx.AsyncClient() as client:
            text = (await client.get(url)).text
        assert "# TYPE memeforge_messages_total counter" in text
        assert "# TYPE memeforge_render_stage_seconds histogram" in text
    finally:
        await asyncio.to_thread(stack.stop_service, "renderer-metrics")

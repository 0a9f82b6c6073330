"""End to end through HTTP: upload, caption, wait for DONE, download, inspect pixels."""

from __future__ import annotations

import asyncio
import io
import json
import signal
import uuid
from typing import Any

import httpx
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from devenv.run.proc import free_port, http_ok, wait_until
from devenv.run.stack import Stack
from tests.support.images import gradient, region_diff
from tests.support.mail import mail_to
from tests.support.memes import wait_until_settled
from tests.support.uploads import post_form

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
    # The presigned URL is fetched as a browser would follow the redirect: without the API
    # key, which is the api's secret and never goes to S3.
    async with httpx.AsyncClient(timeout=30) as storage:
        for meme, (top_text, bottom_text) in zip(settled, captions, strict=True):
            # No QUEUED (the consumer writes none); RENDERING is optional: marked only for
            # a render still running after a moment.
            assert set(meme["state_times"]) - {"RENDERING"} == {"PENDING", "DONE"}
            # Each meme drew its own captions (upper-cased by default), not another's.
            drawn = [" ".join(box["lines"]) for box in meme["result"]["report"]["boxes"]]
            assert drawn == [top_text.upper(), bottom_text.upper()], meme["id"]
            assert (meme["result"]["width"], meme["result"]["height"]) == (WIDTH, HEIGHT)
            response = await api.get(f"/memes/{meme['id']}/image", follow_redirects=False)
            assert response.status_code == 307
            image_bytes = (await storage.get(response.headers["location"])).content
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
    """README "ends FAILED with failure.reason = template_not_found"."""
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


async def test_a_template_uploaded_straight_to_s3_is_renderable(api: httpx.AsyncClient) -> None:
    """README "Direct uploads to S3": the form to S3, complete, then a meme from it (on the
    least-privilege stack, as the api's own IAM user)."""
    started = await api.post("/templates/uploads")
    assert started.status_code == 201, started.text
    image = gradient(320, 240, "PNG")
    sent = await post_form(started.json(), image)
    assert sent.status_code in (200, 201, 204), sent.text
    done = await api.post(started.json()["links"]["complete"], json={"name": "E2E direct"})
    assert done.status_code == 201, done.text
    created = await api.post("/memes", json={"template_id": "e2e-direct", "top": "direct"})
    meme = await wait_until_settled(api, created.json()["id"])
    assert meme["state"] == "DONE", meme.get("failure")
    assert (meme["result"]["width"], meme["result"]["height"]) == (320, 240)
    # Leave the tenant's templates as they were: later tests list them.
    assert (await api.delete("/templates/e2e-direct")).status_code == 204


async def test_the_animated_seed_comes_back_animated(api: httpx.AsyncClient) -> None:
    """README "Animated templates": a GIF template captioned through the API comes back
    animated (GIF and WebP), with the seed's frames, timing and loop."""
    seed = (await api.get("/templates/bouncing-ball")).json()
    assert (seed["frames"], seed["duration_ms"], seed["loop"]) == (24, 24 * 60, 0)
    created = await asyncio.gather(
        *(
            api.post(
                "/memes",
                json={"template_id": "bouncing-ball", "top": "it moves", "format": fmt},
            )
            for fmt in ("gif", "webp")
        )
    )
    settled = await asyncio.gather(*(wait_until_settled(api, r.json()["id"]) for r in created))
    async with httpx.AsyncClient(timeout=30) as storage:
        for meme, fmt in zip(settled, ("GIF", "WEBP"), strict=True):
            assert meme["state"] == "DONE", meme.get("failure")
            report = meme["result"]["report"]
            assert (report["frames"], report["duration_ms"], report["loop"]) == (24, 1440, 0)
            response = await api.get(f"/memes/{meme['id']}/image", follow_redirects=False)
            image = Image.open(
                io.BytesIO((await storage.get(response.headers["location"])).content)
            )
            assert (image.format, getattr(image, "n_frames", 1)) == (fmt, 24)
            assert image.info.get("loop") == 0


async def test_services_shut_down_cleanly(stack: Stack) -> None:
    """README "SIGTERM": workers and the api drain and exit.
    SIGTERM drains and exits 0 (the grace period is not needed when idle)."""
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


async def test_state_changes_stream_as_server_sent_events(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    """README: "stream the state changes as server-sent events": the stream opens with
    the meme's state (PENDING: the consumer is stopped until the stream is open), then
    follows it forward to DONE and ends by itself."""
    listing = (await api.get("/templates", params={"limit": 1})).json()
    await asyncio.to_thread(stack.stop_service, "consumer")
    try:
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
                    if len(states) == 1:
                        stack.start_service("consumer")
    finally:
        if "consumer" not in stack.services:
            stack.start_service("consumer")
    assert states[0] == "PENDING"
    assert states[-1] == "DONE"
    order = ["PENDING", "QUEUED", "RENDERING", "DONE"]
    assert states == sorted(set(states), key=order.index)


async def test_sigterm_lets_the_api_finish_a_request_in_flight(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    """README: "SIGTERM: ... the api drains in-flight requests". An event stream is open
    (its first event received) when the api is told to stop: the stream still ends
    normally, and the api finishes its shutdown; then it is started again."""
    listing = (await api.get("/templates", params={"limit": 1})).json()
    await asyncio.to_thread(stack.stop_service, "consumer")  # the meme stays PENDING
    try:
        created = await api.post(
            "/memes", json={"template_id": listing["items"][0]["id"], "top": "in flight"}
        )
        meme_id = created.json()["id"]
        api_proc = stack.services["api"]
        states: list[str] = []
        async with api.stream("GET", f"/memes/{meme_id}/events", params={"timeout": 3}) as stream:
            async for line in stream.aiter_lines():
                if line.startswith("data: "):
                    states.append(json.loads(line[len("data: ") :])["state"])
                    if len(states) == 1:
                        api_proc.send_signal(signal.SIGTERM)
        assert states == ["PENDING"]  # the stream ran to its own end, 3 s later
        # uvicorn re-raises the signal it caught once it has shut down gracefully
        assert await asyncio.to_thread(api_proc.wait, 60) in (0, -signal.SIGTERM)
        assert "Finished server process" in stack.log_path("api").read_text()
    finally:
        stack.services.pop("api", None)
        api_proc = stack.start_service("api")
        await asyncio.to_thread(
            wait_until, http_ok(f"{stack.api_url}/healthz"), timeout=60, what="api", proc=api_proc
        )
        if "consumer" not in stack.services:
            stack.start_service("consumer")


async def test_custom_boxes_png_output_and_thumbnail(api: httpx.AsyncClient) -> None:
    """README "Any layout: boxes in fractions, per-box style, PNG/WebP, thumbnails"."""
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
    """README "captions fill them in order: tall-checker has three"."""
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
    """README "Tracing": grep <trace id> across the three services' logs."""
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

    def logged(service: str, meme_id: str) -> None:
        # A service logs a meme's end just after its write: the item can be read as
        # ended a moment before the line is in the file.
        def found() -> bool:
            return any(r.get("meme_id") == meme_id for r in traced_lines(service))

        wait_until(found, timeout=10, what=f"{service}'s traced line", proc=None)

    logged("api", meme["id"])
    logged("renderer", meme["id"])

    # The consumer logs nothing for a meme it passes on, so follow one it fails.
    missing = await api.post(
        "/memes",
        json={"template_id": "no-such-template", "top": "traced"},
        headers={"traceparent": parent},
    )
    failed = await wait_until_settled(api, missing.json()["id"])
    assert failed["state"] == "FAILED"
    logged("consumer", failed["id"])


def _sample(metrics: str, name: str, **labels: str) -> float:
    """The value of one Prometheus sample in a /metrics text, 0 if absent."""
    for family in text_string_to_metric_families(metrics):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


async def test_a_worker_serves_prometheus_metrics_when_asked(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    """README: worker metrics are "messages settled by outcome (done/poison/retry), ...,
    won/lost state transitions, and render time per engine stage". The stack's own
    renderer is stopped meanwhile, so the meme is rendered by the one with metrics."""
    port = free_port()
    renderer_env = stack.service_env.get("renderer", stack.env)  # its own identity, if any
    stack.service_env["renderer-metrics"] = {**renderer_env, "MEMEFORGE_METRICS_PORT": str(port)}
    await asyncio.to_thread(stack.stop_service, "renderer")
    proc = stack.start_service("renderer-metrics")
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        await asyncio.to_thread(wait_until, http_ok(url), timeout=60, what="metrics", proc=proc)
        created = await api.post("/memes", json={"template_id": "sunset-hills", "top": "metered"})
        meme = await wait_until_settled(api, created.json()["id"])
        assert meme["state"] == "DONE", meme["failure"]
        async with httpx.AsyncClient() as client:
            text = (await client.get(url)).text
        assert _sample(text, "memeforge_render_stage_seconds_count", stage="draw") >= 1
        assert _sample(text, "memeforge_messages_total", outcome="done") >= 1
        assert _sample(text, "memeforge_transitions_total", target="DONE", result="won") >= 1
    finally:
        await asyncio.to_thread(stack.stop_service, "renderer-metrics")
        stack.start_service("renderer")


async def test_a_meme_with_notify_email_mails_its_link_once(
    stack: Stack, api: httpx.AsyncClient
) -> None:
    """Issue 15 "Email through SES": the notifier mails the result (under least privilege
    too, where this runs as the notifier's own IAM user)."""
    recipient = f"{uuid.uuid4().hex[:12]}@example.com"
    body = {"template_id": "sunset-hills", "top": "mail", "notify_email": recipient}
    meme_id = (await api.post("/memes", json=body)).json()["id"]
    await wait_until_settled(api, meme_id)
    endpoint = stack.emulator.env["AWS_ENDPOINT_URL"]
    for _ in range(240):
        shown = (await api.get(f"/memes/{meme_id}")).json()["deliveries"].get("email", [])
        if any(a["outcome"] == "delivered" for a in shown):
            break
        await asyncio.sleep(0.5)
    [mail] = await asyncio.to_thread(mail_to, endpoint, stack.emulator.backend, recipient)
    assert mail.message["Subject"] == "Your meme is ready (sunset-hills)"
    text = mail.message.get_body(("plain",))
    assert text is not None
    assert meme_id in text.get_content()

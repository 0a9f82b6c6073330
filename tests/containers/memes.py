"""Submitting memes to a containerized api and checking what comes back."""

from __future__ import annotations

import io
import time
from typing import Any

import httpx
from PIL import Image

from tests.support.images import gradient, region_diff

WIDTH, HEIGHT = 640, 480
SETTLE_S = 180


def upload_template(api: httpx.Client, template_id: str) -> None:
    upload = api.post(
        "/templates",
        data={"name": f"Gradient {template_id}", "id": template_id},
        files={"file": ("g.jpg", gradient(WIDTH, HEIGHT), "image/jpeg")},
    )
    assert upload.status_code == 201, upload.text


def submit(api: httpx.Client, template_id: str, count: int) -> list[str]:
    ids = []
    for i in range(count):
        created = api.post(
            "/memes", json={"template_id": template_id, "top": f"meme {i}", "bottom": "podman"}
        )
        assert created.status_code == 202, created.text
        ids.append(created.json()["id"])
    return ids


def settle(api: httpx.Client, meme_id: str) -> dict[str, Any]:
    """Long-poll until the meme is DONE or FAILED (bounded by SETTLE_S)."""
    deadline = time.monotonic() + SETTLE_S
    while time.monotonic() < deadline:
        meme: dict[str, Any] = api.get(f"/memes/{meme_id}", params={"wait": 10}).json()
        if meme["state"] in ("DONE", "FAILED"):
            return meme
    raise AssertionError(f"meme {meme_id} did not settle within {SETTLE_S}s")


def assert_captioned(api: httpx.Client, meme: dict[str, Any]) -> None:
    """DONE, and the downloaded JPEG has captions at top and bottom over the template."""
    assert meme["state"] == "DONE", meme.get("failure")
    redirect = api.get(f"/memes/{meme['id']}/image", follow_redirects=False)
    assert redirect.status_code == 307
    # Followed as a browser would: the presigned URL is the credential, the API key stays home.
    download = httpx.get(redirect.headers["location"], timeout=30)
    assert download.status_code == 200, download.text[:300]
    image = Image.open(io.BytesIO(download.content))
    assert (image.format, image.size) == ("JPEG", (WIDTH, HEIGHT))
    source = Image.open(io.BytesIO(gradient(WIDTH, HEIGHT))).convert("RGB")
    rendered = image.convert("RGB")
    assert region_diff(rendered, source, (0, 0, WIDTH, int(HEIGHT * 0.22))) > 8
    assert region_diff(rendered, source, (0, int(HEIGHT * 0.78), WIDTH, HEIGHT)) > 8
    assert region_diff(rendered, source, (0, int(HEIGHT * 0.35), WIDTH, int(HEIGHT * 0.65))) < 2

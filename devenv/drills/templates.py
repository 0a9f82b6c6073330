"""Pieces the drills (chaos, rotation) share."""

from __future__ import annotations

import io

import httpx


async def upload_gradient_template(
    api: httpx.AsyncClient, template_id: str, name: str, size: tuple[int, int]
) -> None:
    """Upload a generated gradient JPEG through the api, as a client would."""
    from PIL import Image  # only the drills draw their own test image

    out = io.BytesIO()
    Image.linear_gradient("L").resize(size).convert("RGB").save(out, "JPEG")
    response = await api.post(
        "/templates",
        data={"name": name, "id": template_id},
        files={"file": (f"{template_id}.jpg", out.getvalue(), "image/jpeg")},
    )
    response.raise_for_status()

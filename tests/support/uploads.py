"""A client's side of a direct upload: the presigned POST form sent straight to S3."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx


async def post_form(
    upload: dict[str, Any], data: bytes, *, content_type: str = "image/png"
) -> httpx.Response:
    """Send ``data`` with the form of a ``POST /templates/uploads`` answer, as a browser or
    the Android sample would (the file is the last part, after every field)."""
    fields = dict(upload["fields"]) | {"Content-Type": content_type}
    async with httpx.AsyncClient() as http:
        return await http.post(
            upload["url"], data=fields, files={"file": ("upload", data, content_type)}
        )


def signed_policy(upload: dict[str, Any]) -> dict[str, Any]:
    """The policy document the form carries (what S3 checks the POST against)."""
    policy: dict[str, Any] = json.loads(base64.b64decode(upload["fields"]["policy"]))
    return policy


def with_policy(upload: dict[str, Any], policy: dict[str, Any]) -> dict[str, Any]:
    """The form with its policy replaced and the signature left as it was (tampering)."""
    encoded = base64.b64encode(json.dumps(policy).encode()).decode()
    return upload | {"fields": upload["fields"] | {"policy": encoded}}

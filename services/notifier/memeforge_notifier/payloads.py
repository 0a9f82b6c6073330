"""What a notification says: the webhook body and the email, built from the ended item.

The body is built the same way on every attempt (sorted keys, the event's own time), so
every delivery of an event carries the same bytes under the same ``webhook-id``.
"""

from __future__ import annotations

import json
from typing import Any

from memeforge_common.models import MemeStatus, NotificationMessage


def _time(value: Any) -> str:
    return str(value.isoformat().replace("+00:00", "Z"))


def meme_data(item: MemeStatus) -> dict[str, Any]:
    """The meme as a receiver sees it: no S3 keys, the API's links."""
    links = {"self": f"/memes/{item.id}"}
    data: dict[str, Any] = {
        "id": item.id,
        "state": item.state.value,
        "template_id": item.template_id,
        "created_at": _time(item.created_at),
    }
    if item.result is not None:
        links["image"] = f"/memes/{item.id}/image"
        if item.result.thumbnail_key is not None:
            links["thumbnail"] = f"/memes/{item.id}/thumbnail"
        data["result"] = {
            "content_type": item.result.content_type,
            "bytes": item.result.bytes,
            "width": item.result.width,
            "height": item.result.height,
        }
    if item.failure is not None:
        data["failure"] = {"reason": item.failure.reason, "detail": item.failure.detail}
    data["links"] = links
    return data


def webhook_body(message: NotificationMessage, data: dict[str, Any]) -> bytes:
    """Standard Webhooks' payload shape: ``type``, ``timestamp``, ``data``."""
    body = {"type": message.event, "timestamp": _time(message.occurred_at), "data": data}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

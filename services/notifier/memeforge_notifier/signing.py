"""Standard Webhooks signatures (https://www.standardwebhooks.com/): what a receiver checks.

The signed content is ``<webhook-id>.<webhook-timestamp>.<body>``, signed with HMAC-SHA256
under the base64 key after the ``whsec_`` prefix, sent as ``webhook-signature: v1,<base64>``.
The id is the event's (stable across retries), the timestamp the attempt's, so a receiver
can both dedupe and refuse replays of old deliveries.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from memeforge_common.endpoints import SECRET_PREFIX


def signing_key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    content = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(signing_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def webhook_headers(secret: str, webhook_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, webhook_id, timestamp, body),
    }

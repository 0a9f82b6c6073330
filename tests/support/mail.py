"""Mail the emulator's SES kept: moto (``/moto-api/data.json``) and LocalStack
(``/_aws/ses``) both record what was sent."""

from __future__ import annotations

import email
import email.policy
import json
import urllib.request
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any


@dataclass(frozen=True)
class SentMail:
    source: str
    destinations: tuple[str, ...]
    message: EmailMessage


def _parse(raw: str) -> EmailMessage:
    parsed = email.message_from_string(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def _hold_s3_restores(endpoint: str) -> None:
    """data.json reads every model's properties, and reading an S3 key's ``status`` moves
    its (Glacier) restore on and announces it to the key's bucket: a multipart part (a
    batch's ZIP) has no bucket, so the dump fails with NoSuchBucket. Restores that never
    progress are never announced; nothing here restores from Glacier."""
    body = {"model_name": "s3::keyrestore", "transition": {"progression": "manual", "times": 2**31}}
    request = urllib.request.Request(
        f"{endpoint}/moto-api/state-manager/set-transition",
        data=json.dumps(body).encode(),
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10):
        pass


def sent_mail(endpoint: str, backend: str) -> list[SentMail]:
    if backend == "moto":
        _hold_s3_restores(endpoint)
        # A dump of every model moto holds: after a 200-item batch on a loaded machine it
        # took longer than 10 s.
        with urllib.request.urlopen(f"{endpoint}/moto-api/data.json", timeout=90) as response:
            data: dict[str, Any] = json.load(response)
        return [
            SentMail(m["source"], tuple(m["destinations"]), _parse(m["raw_data"]))
            for m in data.get("ses", {}).get("RawMessage", [])
        ]
    with urllib.request.urlopen(f"{endpoint}/_aws/ses", timeout=10) as response:
        messages = json.load(response).get("messages", [])
    found = []
    for m in messages:
        destination = m.get("Destination", [])
        if isinstance(destination, dict):
            destination = destination.get("ToAddresses", [])
        found.append(SentMail(m.get("Source", ""), tuple(destination), _parse(m["RawData"])))
    return found


def mail_to(endpoint: str, backend: str, recipient: str) -> list[SentMail]:
    return [m for m in sent_mail(endpoint, backend) if recipient in m.message["To"]]

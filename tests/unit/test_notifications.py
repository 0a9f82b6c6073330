"""Webhook signing and payloads, checked against the Standard Webhooks reference library."""

from __future__ import annotations

import email
import email.policy
import html
import json
import time
from datetime import UTC, datetime
from email.message import EmailMessage

import pytest
from memeforge_common.endings import notifications_of
from memeforge_common.endpoints import new_secret
from memeforge_common.models import Batch, BatchState, Notify, event_id
from memeforge_notifier.mail import batch_mail
from memeforge_notifier.payloads import webhook_body
from memeforge_notifier.signing import webhook_headers
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

pytestmark = pytest.mark.unit

BATCH = "0123456789abcdef0123456789abcdef"
WHEN = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_our_signature_verifies_with_the_reference_library_and_a_tampered_one_does_not() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_")
    body = b'{"type":"meme.done","data":{"id":"x"}}'
    headers = webhook_headers(secret, "msg_x_meme_done", int(time.time()), body)
    assert Webhook(secret).verify(body, headers)["type"] == "meme.done"
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace(b"x", b"y"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, headers)
    stale = webhook_headers(secret, "msg_x_meme_done", int(time.time()) - 3600, body)
    with pytest.raises(WebhookVerificationError):  # receivers refuse replays of old ones
        Webhook(secret).verify(body, stale)


def test_a_batch_event_carries_its_payload_and_one_id_per_channel() -> None:
    notify = Notify(callback_url="https://hooks.example/b", email="me@example.com")
    data = {"id": BATCH, "counts": {"DONE": 199, "FAILED": 1}}
    messages = notifications_of(BATCH, "acme", notify, "batch.done", WHEN, data)
    assert [m.channel for m in messages] == ["webhook", "email"]
    assert {m.event_id for m in messages} == {event_id(BATCH, "batch.done")}
    body = webhook_body(messages[0], data)
    assert body == webhook_body(messages[0], dict(reversed(data.items())))  # key order
    assert json.loads(body) == {
        "type": "batch.done",
        "timestamp": "2026-12-01T12:00:00Z",
        "data": data,
    }


def test_a_batch_mail_holds_its_counts_and_link_and_no_images() -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    batch = Batch(
        id="b" * 32,
        tenant="acme",
        state=BatchState.ARCHIVING,
        total=3,
        done=2,
        failed=1,
        created_at=now,
        updated_at=now,
    )
    link = "https://s3.example/memes/acme/batches/b.zip?X-Amz-Signature=a&X-Amz-Expires=600"
    raw = batch_mail(
        batch,
        sender="memeforge@example.com",
        recipient="me@example.com",
        link=link,
        expires_in_s=600,
        event_id=event_id(batch.id, "batch.done"),
    )
    mail = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(mail, EmailMessage)
    assert mail["Subject"] == "Your batch is ready: 2 done, 1 failed"
    assert mail["Message-ID"] == f"<msg_{batch.id}_batch_done@memeforge>"
    plain, markup = mail.get_body(("plain",)), mail.get_body(("html",))
    assert plain is not None
    assert markup is not None
    assert plain.get_content() == (
        f"Your batch {batch.id} has ended: 2 of 3 done, 1 failed.\n"
        f"Download the ZIP (the link works for up to 10 min): {link}\n"
    )
    assert f'href="{html.escape(link)}"' in markup.get_content()
    assert not [p for p in mail.walk() if p.get_content_maintype() == "image"]

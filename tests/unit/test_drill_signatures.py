"""The chaos drill's webhook check: signed, and fresh when received (not when checked)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook

from devenv.drills.chaos import signed_when_received
from devenv.drills.receiver import Delivery

pytestmark = pytest.mark.unit

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def delivery(sent: float, received: float, body: bytes = b'{"type":"meme.done"}') -> Delivery:
    signature = Webhook(SECRET).sign("msg_1", datetime.fromtimestamp(int(sent), UTC), body.decode())
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(int(sent)),
        "webhook-signature": f"v1,bogus {signature}",
    }
    return Delivery("/chaos", headers, body, 200, received_at=received)


def test_a_delivery_checked_long_after_it_arrived_still_verifies() -> None:
    an_hour_ago = time.time() - 3600
    early = delivery(sent=an_hour_ago, received=an_hour_ago + 1)
    assert signed_when_received(SECRET, early)
    # What the drill did before: the library refuses it as too old by now.
    with pytest.raises(Exception, match="too old"):
        Webhook(SECRET).verify(early.body, early.headers)


def test_tampered_stale_or_foreign_deliveries_do_not_verify() -> None:
    now = time.time()
    good = delivery(sent=now, received=now)
    assert signed_when_received(SECRET, good)
    tampered = Delivery(good.path, good.headers, b'{"type":"meme.failed"}', 200, now)
    assert not signed_when_received(SECRET, tampered)
    assert not signed_when_received(SECRET, delivery(sent=now - 600, received=now))
    other = "whsec_" + "c2VjcmV0LW9mLWFub3RoZXItdGVuYW50IQ=="
    assert not signed_when_received(other, good)
    unsigned = Delivery(good.path, {"webhook-id": "msg_1"}, good.body, 200, now)
    assert not signed_when_received(SECRET, unsigned)

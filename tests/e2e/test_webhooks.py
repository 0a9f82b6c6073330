"""Webhooks and mail end to end: the api, the pipeline and the notifier as real processes,
a receiver on loopback (allow-listed by MEMEFORGE_EGRESS_ALLOW), the emulator's SES.

Retries back off by seconds here (MEMEFORGE_NOTIFY_RETRY_*), hours by default."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from devenv.drills.receiver import Receiver, receiver
from devenv.run.proc import stop
from devenv.run.stack import Stack, register_webhook_secret
from tests.support.mail import mail_to
from tests.support.memes import wait_until_settled
from tests.support.stack import running_stack

pytestmark = pytest.mark.e2e

HOOK_SETTINGS = {
    "MEMEFORGE_EGRESS_ALLOW": "127.0.0.1/32",
    "MEMEFORGE_EGRESS_TIMEOUT_S": "5",
    "MEMEFORGE_NOTIFY_RETRY_BASE_S": "1",
    "MEMEFORGE_NOTIFY_RETRY_MAX_S": "3",
    "MEMEFORGE_NOTIFY_MAX_ATTEMPTS": "40",
    # A killed notifier's message comes back this soon (the heartbeat extends live ones).
    "MEMEFORGE_VISIBILITY_TIMEOUT_S": "6",
    "MEMEFORGE_KEY_CACHE_S": "0",
}
PATIENCE_S = 120.0


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, e2e_backend: str) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp(f"stack-hooks-{e2e_backend}")
    with running_stack(workdir, backend=e2e_backend, settings=HOOK_SETTINGS) as running:
        yield running


@pytest.fixture(scope="module")
def secret(stack: Stack) -> str:
    return register_webhook_secret(stack.env)


@pytest.fixture
def hooks() -> Iterator[Receiver]:
    with receiver() as running:
        yield running


@pytest.fixture
async def api(stack: Stack, secret: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=stack.api_url, headers=stack.auth_headers, timeout=30
    ) as client:
        yield client


async def meme(api: httpx.AsyncClient, **notify: str) -> str:
    body = {"template_id": "sunset-hills", "top": "hello", "bottom": "hooks", **notify}
    response = await api.post("/memes", json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


async def deliveries(hooks: Receiver, path: str, ok: int = 1) -> list[Any]:
    return await asyncio.to_thread(hooks.wait_for, path, ok=ok, timeout=PATIENCE_S)


async def attempts(
    api: httpx.AsyncClient, meme_id: str, channel: str, outcome: str, count: int = 1
) -> list[dict[str, Any]]:
    """The meme's recorded attempts on ``channel`` once ``count`` of them have ``outcome``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PATIENCE_S
    while loop.time() < deadline:
        shown = (await api.get(f"/memes/{meme_id}")).json()["deliveries"].get(channel, [])
        if sum(a["outcome"] == outcome for a in shown) >= count:
            return list(shown)
        await asyncio.sleep(0.5)
    raise AssertionError(f"fewer than {count} {outcome} attempts on {channel} for {meme_id}")


async def test_a_signed_webhook_is_delivered_and_shown_on_the_meme(
    api: httpx.AsyncClient, hooks: Receiver, secret: str
) -> None:
    """README "Standard Webhooks"; "Each attempt shows on the meme"."""
    meme_id = await meme(api, callback_url=hooks.url("/ok"))
    [delivery] = await deliveries(hooks, "/ok")
    payload = Webhook(secret).verify(delivery.body, delivery.headers)
    assert (payload["type"], payload["data"]["id"]) == ("meme.done", meme_id)
    assert delivery.headers["webhook-id"] == f"msg_{meme_id}_meme_done"
    [shown] = await attempts(api, meme_id, "webhook", "delivered")
    assert (shown["outcome"], shown["status"]) == ("delivered", 204)


async def test_a_failed_meme_is_announced_as_meme_failed(
    api: httpx.AsyncClient, hooks: Receiver, secret: str
) -> None:
    response = await api.post(
        "/memes",
        json={"template_id": "no-such-template", "top": "x", "callback_url": hooks.url("/f")},
    )
    meme_id = response.json()["id"]
    [delivery] = await deliveries(hooks, "/f")
    payload = Webhook(secret).verify(delivery.body, delivery.headers)
    assert payload["type"] == "meme.failed"
    assert payload["data"]["failure"]["reason"] == "template_not_found"
    assert delivery.headers["webhook-id"] == f"msg_{meme_id}_meme_failed"


async def test_500_three_times_is_retried_then_delivered(
    api: httpx.AsyncClient, hooks: Receiver, secret: str
) -> None:
    """README "retried with backoff by message visibility (never a sleep)"."""
    hooks.fail("/flaky", 3)
    meme_id = await meme(api, callback_url=hooks.url("/flaky"))
    found = await deliveries(hooks, "/flaky")
    assert [d.status for d in found] == [500, 500, 500, 204]
    assert {d.headers["webhook-id"] for d in found} == {f"msg_{meme_id}_meme_done"}
    for delivery in found:
        Webhook(secret).verify(delivery.body, delivery.headers)
    shown = await attempts(api, meme_id, "webhook", "delivered")
    assert [(a["outcome"], a["status"]) for a in shown] == [
        ("retrying", 500),
        ("retrying", 500),
        ("retrying", 500),
        ("delivered", 204),
    ]


async def test_a_receiver_down_for_three_attempts_gets_it_once_it_is_up(
    api: httpx.AsyncClient, secret: str
) -> None:
    """README "not answering, is retried with backoff"."""
    away = Receiver()  # its port is chosen, nothing listens on it yet
    meme_id = await meme(api, callback_url=away.url("/late"))
    await wait_until_settled(api, meme_id)
    # Down through three attempts (retried, not given up), waited for rather than slept.
    shown = await attempts(api, meme_id, "webhook", "retrying", count=3)
    assert {a["error"] for a in shown} == {"unreachable"}
    away.up()
    try:
        [delivery] = await deliveries(away, "/late")
        Webhook(secret).verify(delivery.body, delivery.headers)
    finally:
        away.down()
    await attempts(api, meme_id, "webhook", "delivered")


async def test_a_notifier_killed_mid_delivery_delivers_again_with_the_same_id(
    stack: Stack, api: httpx.AsyncClient, hooks: Receiver, secret: str
) -> None:
    """README "a notifier killed mid-delivery … carries the same `webhook-id`"."""
    arrived = hooks.stall("/stall")
    meme_id = await meme(api, callback_url=hooks.url("/stall"))
    assert await asyncio.to_thread(arrived.wait, PATIENCE_S)
    stop(stack.services.pop("notifier"), sig=signal.SIGKILL)  # while the POST is open
    hooks.release("/stall")
    stack.start_service("notifier")

    found = await deliveries(hooks, "/stall")
    assert len(found) >= 2
    assert found[0].status == 0  # the first one never got its answer to the notifier
    assert {d.headers["webhook-id"] for d in found} == {f"msg_{meme_id}_meme_done"}
    for delivery in found:
        Webhook(secret).verify(delivery.body, delivery.headers)


@pytest.mark.parametrize(
    "target", ["http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/hook"]
)
async def test_a_forbidden_target_is_refused_and_recorded(
    api: httpx.AsyncClient, target: str
) -> None:
    """README "refused and recorded (`refused`, `forbidden-address`), never retried"."""
    meme_id = await meme(api, callback_url=target)
    [shown] = await attempts(api, meme_id, "webhook", "refused")
    assert shown["error"] == "forbidden-address"


async def test_one_mail_for_a_meme_that_asked_none_for_one_that_did_not(
    stack: Stack, api: httpx.AsyncClient
) -> None:
    """README "One mail per ended meme that asked"."""
    silent = await meme(api)
    await wait_until_settled(api, silent)
    recipient = f"{uuid.uuid4().hex[:12]}@example.com"
    meme_id = await meme(api, notify_email=recipient)
    await attempts(api, meme_id, "email", "delivered")

    endpoint = stack.emulator.env["AWS_ENDPOINT_URL"]
    [mail] = await asyncio.to_thread(mail_to, endpoint, stack.emulator.backend, recipient)
    assert mail.message["To"] == recipient
    assert mail.message["Subject"] == "Your meme is ready (sunset-hills)"
    text = mail.message.get_body(("plain",))
    assert text is not None
    assert f"memes/dev/{meme_id}.jpg" in text.get_content()  # the presigned result link
    everything = await asyncio.to_thread(mail_to, endpoint, stack.emulator.backend, "@")
    assert not any(silent in str(m.message) for m in everything)
    assert (await api.get(f"/memes/{silent}")).json()["deliveries"] == {}

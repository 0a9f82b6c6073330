"""Notifications against the real emulator: the ending's enqueue, the sweeper's re-enqueue,
and the notifier's deliveries (signed webhooks to a loopback receiver, SES mail), each
attempt recorded on the meme."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator

import pytest
from memeforge_common.aws import AwsClients
from memeforge_common.egress import EgressPolicy
from memeforge_common.endings import Endings
from memeforge_common.endpoints import EndpointStore
from memeforge_common.items import MemeStore, new_item
from memeforge_common.limits import MAX_DELIVERY_RECORDS
from memeforge_common.models import (
    DeliveryAttempt,
    MemeResult,
    MemeState,
    NotificationMessage,
    Notify,
    RenderSpec,
    classic_boxes,
    event_id,
    utcnow,
)
from memeforge_common.outputs import OutputStore
from memeforge_common.publishers import RenderPublisher, RequestPublisher
from memeforge_common.queues import QueueMessage, queue_url
from memeforge_common.settings import Settings
from memeforge_common.templates import TemplateStore
from memeforge_common.tracing import new_traceparent
from memeforge_consumer.dispatch import Dispatcher
from memeforge_consumer.sweeper import Sweeper
from memeforge_notifier.deliver import DeadNotifications, DeliveryFailed
from prometheus_client import REGISTRY
from standardwebhooks.webhooks import Webhook

from devenv.drills.receiver import Receiver, receiver
from tests.conftest import BACKEND
from tests.support.images import gradient
from tests.support.mail import mail_to
from tests.support.notifications import endings_for, notifier

pytestmark = pytest.mark.integration

SPEC = RenderSpec(boxes=classic_boxes("top", "bottom"), thumbnail_side=64)
TENANT = "acme"


@pytest.fixture
def store(aws: AwsClients, resources: Settings) -> MemeStore:
    return MemeStore(aws.dynamodb, resources.table)


@pytest.fixture
async def endings(aws: AwsClients, resources: Settings, store: MemeStore) -> Endings:
    return await endings_for(aws, resources, store)


@pytest.fixture
def hooks() -> Iterator[Receiver]:
    with receiver() as running:
        yield running


@pytest.fixture
async def secret(aws: AwsClients, resources: Settings) -> str:
    endpoint = await EndpointStore(aws.dynamodb, resources.table).upsert(TENANT, None)
    return endpoint.secret


async def rendering(store: MemeStore, notify: Notify | None) -> str:
    """A meme of TENANT that is being rendered."""
    item = new_item(uuid.uuid4().hex, "tpl", SPEC, tenant=TENANT, notify=notify)
    await store.create(item)
    assert await store.transition(item.id, MemeState.RENDERING)
    return item.id


async def notes(aws: AwsClients, settings: Settings) -> list[NotificationMessage]:
    return [NotificationMessage.model_validate_json(m.body) for m in await received(aws, settings)]


async def received(aws: AwsClients, settings: Settings) -> list[QueueMessage]:
    url = await queue_url(aws.sqs, settings.notification_queue)
    found: list[QueueMessage] = []
    while True:
        response = await aws.sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        batch = [QueueMessage.from_sqs(m) for m in response.get("Messages", [])]
        if not batch:
            return found
        found += batch


def note(message: QueueMessage, receive_count: int = 1) -> QueueMessage:
    """The same message as its n-th receive."""
    return QueueMessage(
        message_id=message.message_id,
        receipt_handle=message.receipt_handle,
        body=message.body,
        receive_count=receive_count,
    )


def notification(meme_id: str, target: str, channel: str = "webhook") -> QueueMessage:
    body = NotificationMessage(
        event="meme.done",
        event_id=event_id(meme_id, "meme.done"),
        subject_id=meme_id,
        tenant=TENANT,
        channel=channel,  # type: ignore[arg-type]
        target=target,
        occurred_at=utcnow(),
    )
    return QueueMessage(uuid.uuid4().hex, "unused", body.model_dump_json(), 1)


def retried() -> float:
    labels = {"channel": "webhook", "outcome": "retrying"}
    return REGISTRY.get_sample_value("memeforge_notification_attempts_total", labels) or 0.0


async def done(store: MemeStore, endings: Endings, meme_id: str, notify: Notify | None) -> None:
    result = MemeResult(
        key=f"memes/{TENANT}/{meme_id}.jpg", content_type="image/jpeg", bytes=10, width=8, height=8
    )
    ended = await endings.end(
        meme_id,
        MemeState.DONE,
        tenant=TENANT,
        notify=notify,
        traceparent=new_traceparent(),
        slot=None,
        result=result,
    )
    assert ended


async def test_ending_enqueues_one_notification_per_channel_then_clears_the_mark(
    aws: AwsClients, resources: Settings, store: MemeStore, endings: Endings
) -> None:
    """README "Nothing lost between the ending and the enqueue"."""
    notify = Notify(callback_url="https://hooks.example/x", email="me@example.com")
    meme_id = await rendering(store, notify)
    await done(store, endings, meme_id, notify)

    messages = [
        NotificationMessage.model_validate_json(m.body) for m in await received(aws, resources)
    ]
    assert sorted(m.channel for m in messages) == ["email", "webhook"]
    assert {m.event_id for m in messages} == {event_id(meme_id, "meme.done")}
    assert {m.target for m in messages} == {"https://hooks.example/x", "me@example.com"}
    future = utcnow().replace(year=utcnow().year + 1)
    assert await store.notify_due("meme.done", future) == []


async def test_a_meme_that_asked_for_nothing_enqueues_nothing(
    aws: AwsClients, resources: Settings, store: MemeStore, endings: Endings
) -> None:
    meme_id = await rendering(store, None)
    await done(store, endings, meme_id, None)
    assert await received(aws, resources) == []


async def test_the_sweeper_re_enqueues_an_ending_whose_enqueue_was_lost(
    aws: AwsClients, resources: Settings, store: MemeStore, endings: Endings
) -> None:
    """The worker died between the terminal write and the send: the mark is found."""
    notify = Notify(callback_url="https://hooks.example/x")
    meme_id = await rendering(store, notify)
    # The ending write alone, as a worker that died right after it left it.
    assert await store.transition(meme_id, MemeState.DONE, notify_due="meme.done")
    settings = resources.model_copy(update={"notify_enqueue_timeout_s": 0.001})
    templates = TemplateStore(aws.s3, settings.bucket)
    renders = RenderPublisher(aws.sqs, await queue_url(aws.sqs, settings.render_queue))
    requests = RequestPublisher(aws.sqs, await queue_url(aws.sqs, settings.request_queue))
    dispatcher = Dispatcher(store, templates, renders, endings)
    sweeper = Sweeper(store, dispatcher, requests, endings, settings)

    assert await sweeper.sweep_once() == 1
    [message] = [
        NotificationMessage.model_validate_json(m.body) for m in await received(aws, settings)
    ]
    assert message.event_id == event_id(meme_id, "meme.done")
    item = await store.get(meme_id)
    assert item is not None
    assert message.occurred_at == item.state_times[MemeState.DONE]
    assert await sweeper.sweep_once() == 0  # the mark is gone: no second copy


async def test_a_webhook_is_signed_per_standard_webhooks_and_recorded(
    aws: AwsClients,
    resources: Settings,
    store: MemeStore,
    endings: Endings,
    hooks: Receiver,
    secret: str,
) -> None:
    notify = Notify(callback_url=hooks.url("/signed"))
    meme_id = await rendering(store, notify)
    await done(store, endings, meme_id, notify)
    [message] = await received(aws, resources)

    await notifier(aws, resources).handle(message)

    [delivery] = hooks.to("/signed")
    payload = Webhook(secret).verify(delivery.body, delivery.headers)  # the reference library
    assert payload["type"] == "meme.done"
    assert payload["data"]["id"] == meme_id
    assert payload["data"]["state"] == "DONE"
    assert "key" not in json.dumps(payload["data"]["result"])  # no S3 keys leave
    assert delivery.headers["webhook-id"] == event_id(meme_id, "meme.done")
    with pytest.raises(Exception, match="signature"):
        Webhook(secret).verify(delivery.body + b" ", delivery.headers)
    item = await store.get(meme_id)
    assert item is not None
    [attempt] = item.deliveries["webhook"]
    assert (attempt.outcome, attempt.status, attempt.attempt) == ("delivered", 204, 1)

    # A re-sent copy of the message is not delivered again.
    await notifier(aws, resources).handle(note(message, 2))
    assert len(hooks.to("/signed")) == 1


async def test_a_receiver_answering_500_three_times_is_retried_then_delivered(
    aws: AwsClients,
    resources: Settings,
    store: MemeStore,
    endings: Endings,
    hooks: Receiver,
    secret: str,
) -> None:
    hooks.fail("/flaky", 3)
    notify = Notify(callback_url=hooks.url("/flaky"))
    meme_id = await rendering(store, notify)
    await done(store, endings, meme_id, notify)
    [message] = await received(aws, resources)
    worker = notifier(aws, resources)
    retries_before = retried()

    for receive in (1, 2, 3):
        with pytest.raises(DeliveryFailed):  # the queue loop backs the message off
            await worker.handle(note(message, receive))
    await worker.handle(note(message, 4))

    deliveries = hooks.to("/flaky")
    assert [d.status for d in deliveries] == [500, 500, 500, 204]
    assert retried() - retries_before == 3  # memeforge_notification_attempts_total
    assert {d.headers["webhook-id"] for d in deliveries} == {event_id(meme_id, "meme.done")}
    assert len({d.body for d in deliveries}) == 1  # the same event, byte for byte
    for delivery in deliveries:
        Webhook(secret).verify(delivery.body, delivery.headers)
    item = await store.get(meme_id)
    assert item is not None
    assert [(a.attempt, a.outcome, a.status) for a in item.deliveries["webhook"]] == [
        (1, "retrying", 500),
        (2, "retrying", 500),
        (3, "retrying", 500),
        (4, "delivered", 204),
    ]


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.1:{port}/meta",
        "http://localhost:{port}/meta",  # a name resolving to loopback
        "http://10.0.0.1/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:{port}/meta",
    ],
)
async def test_forbidden_targets_are_refused_and_recorded(
    aws: AwsClients,
    resources: Settings,
    store: MemeStore,
    hooks: Receiver,
    secret: str,
    target: str,
) -> None:
    """Without the allow-list, loopback, private and metadata addresses are never called."""
    meme_id = await rendering(store, Notify(callback_url="https://hooks.example/x"))
    assert await store.transition(meme_id, MemeState.DONE)
    url = target.format(port=hooks.port)

    await notifier(aws, resources, EgressPolicy()).handle(notification(meme_id, url))

    assert hooks.deliveries == []
    item = await store.get(meme_id)
    assert item is not None
    [attempt] = item.deliveries["webhook"]
    assert (attempt.outcome, attempt.error) == ("refused", "forbidden-address")


async def test_a_tenant_without_a_signing_secret_is_refused_and_recorded(
    aws: AwsClients, resources: Settings, store: MemeStore, hooks: Receiver
) -> None:
    meme_id = await rendering(store, Notify(callback_url=hooks.url("/x")))
    assert await store.transition(meme_id, MemeState.DONE)
    await notifier(aws, resources).handle(notification(meme_id, hooks.url("/x")))
    assert hooks.deliveries == []
    item = await store.get(meme_id)
    assert item is not None
    assert item.deliveries["webhook"][0].error == "no-signing-secret"


async def test_one_mail_with_the_link_and_the_thumbnail(
    aws: AwsClients, resources: Settings, store: MemeStore, endings: Endings
) -> None:
    recipient = f"{uuid.uuid4().hex[:12]}@example.com"
    notify = Notify(email=recipient)
    meme_id = await rendering(store, notify)
    outputs = OutputStore(aws.s3, resources.bucket)
    image = gradient(40, 30)
    key = await outputs.save(meme_id, "jpeg", image, "image/jpeg", tenant=TENANT)
    thumb = await outputs.save(meme_id, "jpeg", image, "image/jpeg", tenant=TENANT, thumbnail=True)
    result = MemeResult(
        key=key,
        content_type="image/jpeg",
        bytes=len(image),
        width=40,
        height=30,
        thumbnail_key=thumb,
    )
    await endings.end(
        meme_id,
        MemeState.DONE,
        tenant=TENANT,
        notify=notify,
        traceparent=new_traceparent(),
        slot=None,
        result=result,
    )
    [message] = await received(aws, resources)
    worker = notifier(aws, resources)

    await worker.handle(message)
    await worker.handle(note(message, 2))  # a duplicate copy sends no second mail

    endpoint = os.environ["AWS_ENDPOINT_URL"]
    [mail] = mail_to(endpoint, BACKEND, recipient)
    assert mail.source == resources.email_sender
    assert mail.message["Subject"] == "Your meme is ready (tpl)"
    text = mail.message.get_body(("plain",))
    assert text is not None
    assert key in text.get_content()  # the presigned link to the result
    images = [p for p in mail.message.walk() if p.get_content_maintype() == "image"]
    assert [p.get_content() for p in images] == [image]
    assert images[0]["Content-ID"]
    item = await store.get(meme_id)
    assert item is not None
    assert [a.outcome for a in item.deliveries["email"]] == ["delivered"]


async def test_a_dead_notification_is_recorded_as_given_up(
    aws: AwsClients, resources: Settings, store: MemeStore
) -> None:
    meme_id = await rendering(store, Notify(callback_url="https://hooks.example/x"))
    assert await store.transition(meme_id, MemeState.FAILED)
    message = notification(meme_id, "https://hooks.example/x")
    outcomes = await DeadNotifications(store, resources).handle_batch([message])
    assert outcomes.done == {message.message_id}
    item = await store.get(meme_id)
    assert item is not None
    assert item.deliveries["webhook"][-1].outcome == "gave_up"


async def test_the_attempt_record_is_bounded(store: MemeStore) -> None:
    meme_id = await rendering(store, Notify(callback_url="https://hooks.example/x"))
    attempt = DeliveryAttempt(at=utcnow(), attempt=1, outcome="retrying", status=500)
    recorded = [await store.record_delivery(meme_id, "webhook", attempt) for _ in range(25)]
    assert recorded == [True] * MAX_DELIVERY_RECORDS + [False] * (25 - MAX_DELIVERY_RECORDS)
    item = await store.get(meme_id)
    assert item is not None
    assert len(item.deliveries["webhook"]) == MAX_DELIVERY_RECORDS

"""The consumer's pieces against the real emulator: dispatch, DLQ drain, sweeper."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
from memeforge_common.aws import AwsClients
from memeforge_common.items import MemeStore, new_item
from memeforge_common.models import (
    MemeState,
    RenderJob,
    RenderSpec,
    RequestMessage,
    classic_boxes,
    utcnow,
)
from memeforge_common.publishers import RenderPublisher, RequestPublisher
from memeforge_common.queues import ERROR_ATTRIBUTE, QueueMessage, queue_url
from memeforge_common.settings import Settings
from memeforge_common.templates import TemplateInfoCache, TemplateStore
from memeforge_common.tenancy import PUBLIC_TENANT
from memeforge_common.tracing import new_traceparent, trace_id
from memeforge_consumer.deadletters import DeadLetterDrain
from memeforge_consumer.dispatch import Dispatcher
from memeforge_consumer.sweeper import Sweeper
from prometheus_client import REGISTRY

from tests.support.images import store_gradient_template
from tests.support.notifications import endings_for

pytestmark = pytest.mark.integration

SPEC = RenderSpec(boxes=classic_boxes("top", "bottom"))


def message(body: str, **attributes: str) -> QueueMessage:
    return QueueMessage(
        message_id=uuid.uuid4().hex,
        receipt_handle="unused",
        body=body,
        receive_count=1,
        attributes=attributes,
    )


@pytest.fixture
def store(aws: AwsClients, resources: Settings) -> MemeStore:
    return MemeStore(aws.dynamodb, resources.table)


@pytest.fixture
def templates(aws: AwsClients, resources: Settings) -> TemplateStore:
    return TemplateStore(aws.s3, resources.bucket)


@pytest.fixture
async def dispatcher(
    aws: AwsClients, resources: Settings, store: MemeStore, templates: TemplateStore
) -> Dispatcher:
    renders = RenderPublisher(aws.sqs, await queue_url(aws.sqs, resources.render_queue))
    return Dispatcher(store, templates, renders, await endings_for(aws, resources, store))


async def sweeper_for(
    aws: AwsClients, settings: Settings, store: MemeStore, dispatcher: Dispatcher
) -> Sweeper:
    requests = RequestPublisher(aws.sqs, await queue_url(aws.sqs, settings.request_queue))
    endings = await endings_for(aws, settings, store)
    return Sweeper(store, dispatcher, requests, endings, settings)


async def receive_traced(aws: AwsClients, queue: str) -> list[tuple[str, str | None]]:
    """(body, trace id) of what is on the queue."""
    url = await queue_url(aws.sqs, queue)
    response = await aws.sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, MessageAttributeNames=["All"]
    )
    return [
        (m["Body"], trace_id(m.get("MessageAttributes", {})["traceparent"]["StringValue"]))
        for m in response.get("Messages", [])
    ]


async def receive_all(aws: AwsClients, queue: str) -> list[str]:
    url = await queue_url(aws.sqs, queue)
    response = await aws.sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1
    )
    return [m["Body"] for m in response.get("Messages", [])]


async def test_dispatch_sorts_a_batch_into_jobs_failures_and_poison(
    aws: AwsClients,
    resources: Settings,
    store: MemeStore,
    dispatcher: Dispatcher,
    templates: TemplateStore,
) -> None:
    """README "Permanent errors fail fast"; unreadable messages go to the DLQ."""
    await store_gradient_template(templates, "tpl", tenant="acme", size=(64, 48))
    good = new_item(uuid.uuid4().hex, "tpl", SPEC, tenant="acme")
    missing = new_item(uuid.uuid4().hex, "no-such-template", SPEC, tenant="acme")
    for item in (good, missing):
        await store.create(item)
    batch = [
        message(RequestMessage.of(good).model_dump_json()),
        message(RequestMessage.of(missing).model_dump_json()),
        message("{not json"),
        message(json.dumps({"v": 99, "kind": "meme.requested", "meme_id": good.id})),
        message(RequestMessage(meme_id=uuid.uuid4().hex).model_dump_json()),
    ]
    outcomes = await dispatcher.handle_batch(batch)
    assert outcomes.done == {batch[0].message_id, batch[1].message_id}
    assert set(outcomes.poison) == {m.message_id for m in batch[2:]}
    assert "unknown meme id" in outcomes.poison[batch[4].message_id]

    waiting = await store.get(good.id)
    failed = await store.get(missing.id)
    assert waiting is not None
    assert waiting.state is MemeState.PENDING  # no QUEUED write: it waits for the renderer
    assert waiting.updated_at == good.updated_at
    assert failed is not None
    assert failed.state is MemeState.FAILED
    assert failed.failure is not None
    assert failed.failure.reason == "template_not_found"
    [job_body] = await receive_all(aws, resources.render_queue)
    job = RenderJob.model_validate_json(job_body)
    assert (job.meme_id, job.template_key, job.tenant) == (good.id, "templates/acme/tpl", "acme")
    assert job.spec == SPEC
    assert "output_key" not in json.loads(job_body)

    # A duplicate request re-sends its job (the renderer's conditional ending dedupes).
    again = await dispatcher.handle_batch([batch[0]])
    assert again.done == {batch[0].message_id}
    assert len(await receive_all(aws, resources.render_queue)) == 1


async def test_dispatch_looks_up_a_request_that_carries_only_the_id(
    aws: AwsClients,
    resources: Settings,
    store: MemeStore,
    dispatcher: Dispatcher,
    templates: TemplateStore,
) -> None:
    """An older api's request (the id alone) is read for: a live item gets its job, an
    ended one is acknowledged without one."""
    await store_gradient_template(templates, "tpl3", tenant="acme")
    live = new_item(uuid.uuid4().hex, "tpl3", SPEC, tenant="acme", counted=True)
    ended = new_item(uuid.uuid4().hex, "tpl3", SPEC, tenant="acme")
    await store.create_counted(live, in_flight_cap=10)
    await store.create(ended)
    assert await store.transition(ended.id, MemeState.FAILED)
    batch = [message(RequestMessage(meme_id=i.id).model_dump_json()) for i in (live, ended)]
    outcomes = await dispatcher.handle_batch(batch)
    assert outcomes.done == {m.message_id for m in batch}
    [job_body] = await receive_all(aws, resources.render_queue)
    job = RenderJob.model_validate_json(job_body)
    assert (job.meme_id, job.tenant, job.counted) == (live.id, "acme", True)


async def test_dead_letters_fail_their_items_and_park_the_unidentifiable(
    aws: AwsClients, store: MemeStore, resources: Settings
) -> None:
    """README "The consumer drains both DLQs"; "messages naming no meme stay parked"."""
    queued = new_item(uuid.uuid4().hex, "tpl", SPEC)
    poisoned = new_item(uuid.uuid4().hex, "tpl", SPEC)
    finished = new_item(uuid.uuid4().hex, "tpl", SPEC)
    for item in (queued, poisoned, finished):
        await store.create(item)
    await store.transition(finished.id, MemeState.FAILED)
    endings = await endings_for(aws, resources, store)
    drain = DeadLetterDrain(store, endings, resources.render_queue)
    batch = [
        message(json.dumps({"v": 1, "meme_id": queued.id})),
        message(json.dumps({"meme_id": poisoned.id}), **{ERROR_ATTRIBUTE: "corrupt job"}),
        message(json.dumps({"meme_id": finished.id})),
        message("garbage"),
        message(json.dumps({"meme_id": uuid.uuid4().hex})),
    ]
    outcomes = await drain.handle_batch(batch)
    assert outcomes.done == {m.message_id for m in batch[:3]}
    exhausted = await store.get(queued.id)
    assert exhausted is not None
    assert exhausted.state is MemeState.FAILED
    assert exhausted.failure is not None
    assert exhausted.failure.reason == "retries_exhausted"
    assert exhausted.attempts >= 1
    poison = await store.get(poisoned.id)
    assert poison is not None
    assert poison.failure is not None
    assert poison.failure.reason == "poison_message"
    assert "corrupt job" not in poison.failure.detail  # the worker's text stays in the logs
    assert exhausted.failure.detail == "gave up after 1 failed attempt"
    assert resources.render_queue not in exhausted.failure.detail


async def _drain(aws: AwsClients, settings: Settings) -> list[str]:
    bodies: list[str] = []
    while batch := await receive_all(aws, settings.request_queue):
        bodies += batch
    return bodies


async def test_sweeper_requeues_stuck_pending_items_then_gives_up(
    aws: AwsClients, resources: Settings, store: MemeStore, dispatcher: Dispatcher
) -> None:
    """README "A sweeper re-enqueues items stuck PENDING ... at most MAX_SWEEPS times"."""
    settings = resources.model_copy(update={"rendering_timeout_s": 30.0, "max_sweeps": 2})
    sweeper = await sweeper_for(aws, settings, store, dispatcher)
    fresh = new_item(uuid.uuid4().hex, "tpl", SPEC)
    trace = new_traceparent()
    stuck = new_item(uuid.uuid4().hex, "tpl", SPEC, trace)
    stuck = stuck.model_copy(update={"updated_at": utcnow() - timedelta(minutes=5)})
    for item in (fresh, stuck):
        await store.create(item)

    assert await sweeper.sweep_once() == 1
    [(body, resent_trace)] = await receive_traced(aws, settings.request_queue)
    assert RequestMessage.model_validate_json(body) == RequestMessage.of(stuck)  # the fields too
    assert resent_trace == trace_id(trace)  # the re-sent request continues the trace
    swept = await store.get(stuck.id)
    assert swept is not None
    assert (swept.state, swept.sweeps) == (MemeState.PENDING, 1)
    # Just swept: not stuck again until the timeout passes once more.
    assert await sweeper.sweep_once() == 0

    aged = settings.model_copy(update={"rendering_timeout_s": 0.001})
    sweeper = await sweeper_for(aws, aged, store, dispatcher)
    # stuck's second sweep; fresh is swept too, as everything is "old" now
    assert await sweeper.sweep_once() == 2
    # stuck is over max_sweeps: FAILED; fresh gets its second sweep
    assert await sweeper.sweep_once() == 2
    final = await store.get(stuck.id)
    assert final is not None
    assert final.state is MemeState.FAILED
    assert final.failure is not None
    assert final.failure.reason == "stuck"
    still = await store.get(fresh.id)
    assert still is not None
    assert (still.state, still.sweeps) == (MemeState.PENDING, 2)
    # One request message per re-enqueue: stuck once more, fresh twice.
    resent = [RequestMessage.model_validate_json(b).meme_id for b in await _drain(aws, aged)]
    assert sorted(resent) == sorted([stuck.id, fresh.id, fresh.id])


async def test_sweeper_leaves_a_pending_item_waiting_for_its_render(
    aws: AwsClients, resources: Settings, store: MemeStore, dispatcher: Dispatcher
) -> None:
    """A PENDING item past the pending timeout but not the render timeout may be waiting
    in the render queue (the consumer writes no QUEUED): re-sending it would render a
    backlog twice."""
    settings = resources.model_copy(update={"pending_timeout_s": 1.0, "rendering_timeout_s": 600.0})
    sweeper = await sweeper_for(aws, settings, store, dispatcher)
    waiting = new_item(uuid.uuid4().hex, "tpl", SPEC)
    waiting = waiting.model_copy(update={"updated_at": utcnow() - timedelta(minutes=5)})
    await store.create(waiting)
    assert await sweeper.sweep_once() == 0
    assert await receive_all(aws, settings.request_queue) == []
    unswept = await store.get(waiting.id)
    assert unswept is not None
    assert (unswept.state, unswept.sweeps) == (MemeState.PENDING, 0)


@pytest.mark.parametrize("stuck", [MemeState.QUEUED, MemeState.RENDERING])
async def test_sweeper_resends_the_job_of_a_stuck_queued_or_rendering_item(
    aws: AwsClients,
    resources: Settings,
    store: MemeStore,
    dispatcher: Dispatcher,
    templates: TemplateStore,
    stuck: MemeState,
) -> None:
    """README "A sweeper re-enqueues items stuck ... QUEUED or RENDERING": QUEUED as an
    older consumer left it, RENDERING as a render marked slow left it."""
    # A public template (a seed): every tenant's memes may use it.
    await store_gradient_template(templates, "tpl2", tenant=PUBLIC_TENANT)
    trace = new_traceparent()
    item = new_item(uuid.uuid4().hex, "tpl2", SPEC, trace)
    await store.create(item)
    await store.transition(item.id, MemeState.QUEUED)
    if stuck is MemeState.RENDERING:
        await store.transition(item.id, MemeState.RENDERING)
    settings = resources.model_copy(update={"rendering_timeout_s": 0.001})
    sweeper = await sweeper_for(aws, settings, store, dispatcher)
    assert await sweeper.sweep_once() == 1
    [(body, resent_trace)] = await receive_traced(aws, settings.render_queue)
    assert RenderJob.model_validate_json(body).meme_id == item.id
    assert resent_trace == trace_id(trace)
    swept = await store.get(item.id)
    assert swept is not None
    assert (swept.state, swept.sweeps) == (stuck, 1)


async def test_dispatch_carries_the_trace_to_the_render_job(
    aws: AwsClients,
    resources: Settings,
    store: MemeStore,
    dispatcher: Dispatcher,
    templates: TemplateStore,
) -> None:
    """README "Tracing": the trace rides the SQS message attributes."""
    await store_gradient_template(templates, "traced", tenant=PUBLIC_TENANT)
    item = new_item(uuid.uuid4().hex, "traced", SPEC)
    await store.create(item)
    parent = new_traceparent()
    request = message(RequestMessage.of(item).model_dump_json(), traceparent=parent)
    assert (await dispatcher.handle_batch([request])).done == {request.message_id}
    url = await queue_url(aws.sqs, resources.render_queue)
    response = await aws.sqs.receive_message(
        QueueUrl=url, MessageAttributeNames=["All"], WaitTimeSeconds=1
    )
    [job] = response["Messages"]
    forwarded = job["MessageAttributes"]["traceparent"]["StringValue"]
    assert trace_id(forwarded) == trace_id(parent)


def _aws_requests(service: str, operation: str) -> float:
    labels = {"service": service, "operation": operation}
    return REGISTRY.get_sample_value("memeforge_aws_requests_total", labels) or 0.0


async def test_dispatch_costs_no_item_call_and_one_template_lookup_per_period(
    aws: AwsClients, resources: Settings, store: MemeStore, templates: TemplateStore
) -> None:
    """Issue #12: the request carries the item's fields, so the consumer neither reads
    nor writes the item, and template metadata is cached for seconds (no HeadObject per
    meme)."""
    await store_gradient_template(templates, "seed", tenant=PUBLIC_TENANT, size=(64, 48))
    renders = RenderPublisher(aws.sqs, await queue_url(aws.sqs, resources.render_queue))
    endings = await endings_for(aws, resources, store)
    dispatcher = Dispatcher(store, TemplateInfoCache(templates, ttl_s=60), renders, endings)
    items = [new_item(uuid.uuid4().hex, "seed", SPEC, tenant="acme") for _ in range(10)]
    for item in items:
        await store.create(item)
    counted = [("dynamodb", "GetItem"), ("dynamodb", "UpdateItem"), ("s3", "HeadObject"),
               ("sqs", "SendMessageBatch")]  # fmt: skip
    before = {key: _aws_requests(*key) for key in counted}
    batch = [message(RequestMessage.of(i).model_dump_json()) for i in items]
    outcomes = await dispatcher.handle_batch(batch)
    assert outcomes.done == {m.message_id for m in batch}
    spent = {key: _aws_requests(*key) - before[key] for key in counted}
    # The own folder (acme has no "seed"), then the public one: once for all ten.
    assert spent == {("dynamodb", "GetItem"): 0, ("dynamodb", "UpdateItem"): 0,
                     ("s3", "HeadObject"): 2, ("sqs", "SendMessageBatch"): 1}  # fmt: skip
    for item in items:
        waiting = await store.get(item.id)
        assert waiting is not None
        assert waiting.state is MemeState.PENDING
    bodies = await receive_all(aws, resources.render_queue)
    jobs = [RenderJob.model_validate_json(body) for body in bodies]
    assert len(jobs) == 10
    assert {job.template_key for job in jobs} == {"templates/public/seed"}

"""The consumer as a real process drains both dead-letter queues."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from memeforge_common.aws import AwsClients
from memeforge_common.items import MemeStore, new_item
from memeforge_common.models import MemeState, RenderSpec, RequestMessage, classic_boxes
from memeforge_common.queues import queue_url
from memeforge_common.settings import Settings

from devenv.run.emulator import Emulator
from tests.support.memes import wait_until_terminal
from tests.support.services import service_process

pytestmark = pytest.mark.integration

SPEC = RenderSpec(boxes=classic_boxes("dead", "letter"))


@pytest.fixture
def consumer(emulator: Emulator, resources: Settings, tmp_path: Path) -> Iterator[None]:
    with service_process("memeforge_consumer", emulator, resources, tmp_path / "consumer.log"):
        yield


@pytest.mark.parametrize("queue", ["request", "render"])
async def test_a_dead_lettered_message_fails_its_meme(
    aws: AwsClients, resources: Settings, consumer: None, queue: str
) -> None:
    """README: "The consumer drains both DLQs: the item of every dead message ends FAILED
    (retries_exhausted ...)". The message lands in the DLQ as SQS's redrive leaves it."""
    store = MemeStore(aws.dynamodb, resources.table)
    item = new_item(uuid.uuid4().hex, "tpl", SPEC)
    await store.create(item)
    if queue == "request":
        dlq, body = resources.request_dlq, RequestMessage(meme_id=item.id).model_dump_json()
    else:
        dlq, body = resources.render_dlq, json.dumps({"v": 1, "meme_id": item.id})
    await aws.sqs.send_message(QueueUrl=await queue_url(aws.sqs, dlq), MessageBody=body)
    failed = await wait_until_terminal(store, item.id)
    assert failed.state is MemeState.FAILED
    assert failed.failure is not None
    assert failed.failure.reason == "retries_exhausted"

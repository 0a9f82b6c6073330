"""Drain the dead-letter queues: every dead message leaves its item FAILED, with why.

A message lands in a DLQ either through the redrive policy (it failed
``maxReceiveCount`` times) or because a worker found it poisonous and copied it
there with a ``memeforge-error`` attribute. Messages that name no known meme stay
parked in the DLQ (retention: 14 days) for an operator to look at.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence

from memeforge_common.endings import Endings
from memeforge_common.items import MemeStore
from memeforge_common.logs import bound
from memeforge_common.models import MEME_ID_PATTERN, Failure, MemeState
from memeforge_common.queues import ERROR_ATTRIBUTE, QueueMessage
from memeforge_common.tracing import child_of
from memeforge_common.worker import Outcomes

log = logging.getLogger("memeforge.consumer.dlq")

POISON_DETAIL = "the job could not be read or processed; it was set aside"


def _exhausted(attempts: int) -> str:
    return f"gave up after {attempts} failed attempt{'s' if attempts > 1 else ''}"


def meme_id_of(body: str) -> str | None:
    """The meme a dead message was about, read leniently (any version, any kind)."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    meme_id = data.get("meme_id") if isinstance(data, dict) else None
    if isinstance(meme_id, str) and re.match(MEME_ID_PATTERN, meme_id):
        return meme_id
    return None


class DeadLetterDrain:
    def __init__(self, store: MemeStore, endings: Endings, source_queue: str) -> None:
        self._store = store
        self._endings = endings
        self._source = source_queue

    async def handle_batch(self, messages: Sequence[QueueMessage]) -> Outcomes:
        outcomes = Outcomes()
        for message in messages:
            if await self._settle(message):
                outcomes.done.add(message.message_id)
        return outcomes

    async def _settle(self, message: QueueMessage) -> bool:
        """True when the message has been dealt with for good (delete it)."""
        meme_id = meme_id_of(message.body)
        if meme_id is None:
            log.error(
                "unidentifiable dead message parked in the DLQ",
                extra={"message_id": message.message_id, "queue": self._source},
            )
            return False
        with bound(meme_id=meme_id, message_id=message.message_id):
            item = await self._store.get(meme_id)
            if item is None:
                log.error("dead message for an unknown meme parked in the DLQ")
                return False
            if item.state.terminal:
                return True  # a duplicate of a job that finished after all
            error = message.attributes.get(ERROR_ATTRIBUTE)
            # The DLQ's own receive count includes this one; the source queue's is unknown
            # here, so record at least the attempts the renderer counted.
            attempts = max(item.attempts, 1)
            # The client sees why in general terms; the worker's own text (which names
            # queues and keys) stays in the logs.
            if error:
                log.warning("poison message: %s", error)
                failure = Failure(reason="poison_message", detail=POISON_DETAIL)
            else:
                failure = Failure(reason="retries_exhausted", detail=_exhausted(attempts))
            await self._endings.end(
                meme_id,
                MemeState.FAILED,
                tenant=item.tenant,
                notify=item.notify,
                batch_id=item.batch_id,
                traceparent=child_of(item.traceparent),
                slot=item.in_flight_slot,
                failure=failure,
                attempts=attempts,
            )
            log.warning("dead-lettered meme marked FAILED: %s", failure.reason)
            return True

"""SQS plumbing shared by every service: queue URLs, messages, batched sends and deletes."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from memeforge_common.backoff import Backoff

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient
    from types_aiobotocore_sqs.type_defs import MessageTypeDef

log = logging.getLogger(__name__)

SQS_BATCH_MAX = 10
SQS_BATCH_BYTES = 262_144  # a SendMessageBatch's whole payload (SQS's limit)
_RESOLVE_BACKOFF = Backoff(base_s=0.5, max_s=10.0, jitter=0.2)

T = TypeVar("T")


# Message attribute that says why a message was dead-lettered by a worker.
ERROR_ATTRIBUTE = "memeforge-error"


@dataclass(frozen=True)
class QueueMessage:
    message_id: str
    receipt_handle: str
    body: str
    receive_count: int
    attributes: Mapping[str, str] = field(default_factory=dict)
    received_at: float = field(default_factory=time.monotonic)

    @classmethod
    def from_sqs(cls, raw: MessageTypeDef) -> QueueMessage:
        system = raw.get("Attributes", {})
        custom = raw.get("MessageAttributes", {})
        return cls(
            message_id=raw["MessageId"],
            receipt_handle=raw["ReceiptHandle"],
            body=raw.get("Body", ""),
            receive_count=int(system.get("ApproximateReceiveCount", "1")),
            attributes={k: v.get("StringValue", "") for k, v in custom.items()},
        )


# "No such queue": on a first deploy the services may start before the bootstrap has
# created the queues, so this is waited for like an outage (within the patience).
MISSING_QUEUE_CODES = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})


async def queue_url(sqs: SQSClient, name: str, *, patience_s: float = 300.0) -> str:
    """The queue's URL. Waits (with backoff) while AWS is unreachable or failing, or the
    queue does not exist yet, so a service started during an outage or before the
    bootstrap comes up when they do instead of crash-looping; any other refusal (access
    denied) raises at once."""
    deadline = time.monotonic() + patience_s
    for attempt in itertools.count(1):
        try:
            return (await sqs.get_queue_url(QueueName=name))["QueueUrl"]
        except (BotoCoreError, ClientError) as err:
            if isinstance(err, ClientError):
                status = int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
                code = err.response.get("Error", {}).get("Code", "")
                if status < 500 and code not in MISSING_QUEUE_CODES:
                    raise
            delay = _RESOLVE_BACKOFF.delay(attempt)
            if time.monotonic() + delay > deadline:
                raise
            log.warning(
                "queue %s unreachable or not created yet (%r); retrying in %.1fs", name, err, delay
            )
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")


def _chunks(items: Sequence[T], size: int = SQS_BATCH_MAX) -> list[Sequence[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _entry_bytes(entry: Mapping[str, Any]) -> int:
    """What SQS counts of an entry against a batch's size: body and attributes."""
    size = len(entry["MessageBody"].encode())
    for name, value in entry.get("MessageAttributes", {}).items():
        size += len(name.encode()) + len(value.get("DataType", "").encode())
        size += len(str(value.get("StringValue", "")).encode())
    return size


def _send_chunks(entries: Sequence[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Entries in calls of at most 10 and SQS_BATCH_BYTES (one larger entry goes alone,
    and SQS answers for it)."""
    chunks: list[list[dict[str, Any]]] = []
    size = 0
    for entry in entries:
        entry_size = _entry_bytes(entry)
        if not chunks or len(chunks[-1]) == SQS_BATCH_MAX or size + entry_size > SQS_BATCH_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(entry)
        size += entry_size
    return chunks


async def send_batch(
    sqs: SQSClient,
    url: str,
    bodies: Sequence[str],
    attributes: Sequence[Mapping[str, Any]] | None = None,
) -> list[int]:
    """SendMessageBatch in calls of up to 10 messages and 256 KiB (optional
    MessageAttributes per body). Returns the indexes of the bodies that failed."""
    entries: list[dict[str, Any]] = [
        {"Id": str(i), "MessageBody": body} for i, body in enumerate(bodies)
    ]
    if attributes is not None:
        for entry, attrs in zip(entries, attributes, strict=True):
            entry["MessageAttributes"] = attrs
    failed: list[int] = []
    for chunk in _send_chunks(entries):
        response = await sqs.send_message_batch(QueueUrl=url, Entries=chunk)  # type: ignore[arg-type]
        for failure in response.get("Failed", []):
            log.warning("send failed", extra={"entry": failure["Id"], "code": failure["Code"]})
            failed.append(int(failure["Id"]))
    return failed


async def delete_batch(sqs: SQSClient, url: str, messages: Sequence[QueueMessage]) -> int:
    """DeleteMessageBatch in chunks of 10. Returns how many were deleted."""
    deleted = 0
    for chunk in _chunks(messages):
        entries = [{"Id": str(i), "ReceiptHandle": m.receipt_handle} for i, m in enumerate(chunk)]
        response = await sqs.delete_message_batch(QueueUrl=url, Entries=entries)  # type: ignore[arg-type]
        deleted += len(response.get("Successful", []))
        for failure in response.get("Failed", []):
            log.warning("delete failed", extra={"entry": failure["Id"], "code": failure["Code"]})
    return deleted


async def set_visibility(
    sqs: SQSClient, url: str, timeouts: Sequence[tuple[QueueMessage, int]]
) -> None:
    """ChangeMessageVisibilityBatch: (message, seconds until it is visible again)."""
    for chunk in _chunks(timeouts):
        entries = [
            {"Id": str(i), "ReceiptHandle": m.receipt_handle, "VisibilityTimeout": seconds}
            for i, (m, seconds) in enumerate(chunk)
        ]
        response = await sqs.change_message_visibility_batch(QueueUrl=url, Entries=entries)  # type: ignore[arg-type]
        for failure in response.get("Failed", []):
            log.info("visibility change failed", extra={"code": failure["Code"]})


async def release_batch(sqs: SQSClient, url: str, messages: Sequence[QueueMessage]) -> None:
    """Make messages visible again at once (visibility 0), e.g. on shutdown."""
    await set_visibility(sqs, url, [(m, 0) for m in messages])


async def dead_letter(
    sqs: SQSClient, dlq_url: str, messages: Sequence[tuple[QueueMessage, str]]
) -> list[QueueMessage]:
    """Copy poison messages to the DLQ with the reason attached. Returns those copied."""
    copied: list[QueueMessage] = []
    for chunk in _chunks(messages):
        entries = [
            {
                "Id": str(i),
                "MessageBody": m.body or "<empty>",
                "MessageAttributes": {
                    ERROR_ATTRIBUTE: {"DataType": "String", "StringValue": reason[:1000]}
                },
            }
            for i, (m, reason) in enumerate(chunk)
        ]
        response = await sqs.send_message_batch(QueueUrl=dlq_url, Entries=entries)  # type: ignore[arg-type]
        copied += [chunk[int(ok["Id"])][0] for ok in response.get("Successful", [])]
    return copied

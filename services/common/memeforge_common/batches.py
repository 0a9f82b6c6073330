"""The batch record in DynamoDB: counters, the batch's state, and its items' index.

A batch lives in the memes table as ``batch#<id>``. Its counters (``done``, ``failed``)
are ADDed in the same transaction as the conditional transition that ends one of its
memes (``MemeStore.transition``), so an item counts exactly once however often its
messages are retried, and ``GET /batches/{id}`` reads one record, never every item.

The batch's state moves forward only, by conditional writes:
SUBMITTING → RUNNING → ARCHIVING → DONE (SUBMITTING → ARCHIVING when every item ended
before the fan-out marked it RUNNING). While not DONE it carries ``live_state``
(``batch#<state>``) in the live-items index, so the consumer's batch sweeper queries
what needs doing (an interrupted fan-out, a finished batch to archive), never a Scan.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from memeforge_common.indexes import LIVE_INDEX
from memeforge_common.models import (
    Batch,
    BatchArchive,
    BatchState,
    DeliveryAttempt,
    MemeState,
    Notify,
    utcnow,
)
from memeforge_common.tenancy import tenant_kind

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

log = logging.getLogger(__name__)

RECORD_PREFIX = "batch#"
BATCH_KIND = "batch"
_COUNTERS = {MemeState.DONE: "done", MemeState.FAILED: "failed"}
# An ARCHIVING batch whose ZIP a consumer is building (claim_archive).
BUILDING = RECORD_PREFIX + "BUILDING"


def record_key(batch_id: str) -> dict[str, Any]:
    return {"id": {"S": RECORD_PREFIX + batch_id}}


def live_state(state: BatchState) -> str:
    """The batch's value in the live-items index (never one a meme state can take)."""
    return RECORD_PREFIX + state.value


def _ts(value: datetime) -> str:
    return value.isoformat(timespec="milliseconds")


def count_end(batch_id: str, target: MemeState, table: str, now: str) -> dict[str, Any]:
    """The transaction step that counts one of the batch's memes ending in ``target``."""
    return {
        "Update": {
            "TableName": table,
            "Key": record_key(batch_id),
            "UpdateExpression": "SET updated_at = :now ADD #count :one",
            "ConditionExpression": "attribute_exists(id)",
            "ExpressionAttributeNames": {"#count": _COUNTERS[target]},
            "ExpressionAttributeValues": {":now": {"S": now}, ":one": {"N": "1"}},
        }
    }


def to_dynamo(batch: Batch) -> dict[str, Any]:
    record: dict[str, Any] = {
        **record_key(batch.id),
        "tenant": {"S": batch.tenant},
        "tenant_kind": {"S": tenant_kind(batch.tenant, BATCH_KIND)},
        "state": {"S": batch.state.value},
        "total": {"N": str(batch.total)},
        "done": {"N": str(batch.done)},
        "failed": {"N": str(batch.failed)},
        "created_at": {"S": _ts(batch.created_at)},
        "updated_at": {"S": _ts(batch.updated_at)},
    }
    if not batch.state.terminal:
        record["live_state"] = {"S": live_state(batch.state)}
    if batch.expires_at is not None:
        record["expires_at"] = {"N": str(int(batch.expires_at.timestamp()))}
    if batch.traceparent is not None:
        record["traceparent"] = {"S": batch.traceparent}
    if batch.archive is not None:
        record["archive"] = {"S": batch.archive.model_dump_json()}
    if batch.counted:
        record["counted"] = {"BOOL": True}
    if batch.ended_at is not None:
        record["ended_at"] = {"S": _ts(batch.ended_at)}
    if batch.notify is not None:
        record["notify"] = {"S": batch.notify.model_dump_json(exclude_none=True)}
        # The map the notifier appends batch.done delivery attempts to (record_delivery).
        record["deliveries"] = {"M": {}}
    return record


def from_dynamo(record: dict[str, Any]) -> Batch:
    archive = record.get("archive")
    notify = record.get("notify")
    return Batch(
        id=record["id"]["S"].removeprefix(RECORD_PREFIX),
        tenant=record["tenant"]["S"],
        state=BatchState(record["state"]["S"]),
        total=int(record["total"]["N"]),
        done=int(record["done"]["N"]),
        failed=int(record["failed"]["N"]),
        created_at=datetime.fromisoformat(record["created_at"]["S"]),
        updated_at=datetime.fromisoformat(record["updated_at"]["S"]),
        expires_at=(
            datetime.fromtimestamp(int(record["expires_at"]["N"]), UTC)
            if "expires_at" in record
            else None
        ),
        traceparent=record["traceparent"]["S"] if "traceparent" in record else None,
        archive=BatchArchive.model_validate_json(archive["S"]) if archive else None,
        notify=Notify.model_validate_json(notify["S"]) if notify else None,
        counted=record.get("counted", {}).get("BOOL", False),
        ended_at=datetime.fromisoformat(record["ended_at"]["S"]) if "ended_at" in record else None,
        deliveries={
            channel: tuple(DeliveryAttempt.model_validate_json(a["S"]) for a in value["L"])
            for channel, value in record.get("deliveries", {"M": {}})["M"].items()
        },
    )


class BatchStore:
    def __init__(self, dynamodb: DynamoDBClient, table: str) -> None:
        self._ddb = dynamodb
        self._table = table

    async def create(self, batch: Batch) -> bool:
        """Write a new batch record; False when one with this id exists already."""
        try:
            await self._ddb.put_item(
                TableName=self._table,
                Item=to_dynamo(batch),
                ConditionExpression="attribute_not_exists(id)",
            )
        except self._ddb.exceptions.ConditionalCheckFailedException:
            return False
        return True

    async def get(self, batch_id: str) -> Batch | None:
        response = await self._ddb.get_item(
            TableName=self._table, Key=record_key(batch_id), ConsistentRead=True
        )
        record = response.get("Item")
        return from_dynamo(record) if record else None

    async def advance(
        self,
        batch_id: str,
        sources: tuple[BatchState, ...],
        target: BatchState,
        *,
        seen: datetime | None = None,
        archive: BatchArchive | None = None,
    ) -> bool:
        """Move the batch from one of ``sources`` to ``target`` (and, given ``seen``, only
        if nobody touched it since); False on a lost race."""
        values: dict[str, Any] = {
            ":target": {"S": target.value},
            ":now": {"S": _ts(utcnow())},
        }
        sets = ["#state = :target", "updated_at = :now"]
        names = {"#state": "state"}
        if target.terminal:
            tail = " REMOVE live_state"
        else:
            sets.append("live_state = :live")
            values[":live"] = {"S": live_state(target)}
            tail = ""
        if target is BatchState.ARCHIVING:
            sets.append("ended_at = :now")  # once: ARCHIVING is entered from earlier states only
        if archive is not None:
            sets.append("#archive = :archive")
            values[":archive"] = {"S": archive.model_dump_json()}
            names["#archive"] = "archive"
        placeholders = []
        for i, source in enumerate(sources):
            placeholders.append(f":src{i}")
            values[f":src{i}"] = {"S": source.value}
        condition = f"#state IN ({', '.join(placeholders)})"
        if seen is not None:
            condition += " AND updated_at = :seen"
            values[":seen"] = {"S": _ts(seen)}
        try:
            await self._ddb.update_item(
                TableName=self._table,
                Key=record_key(batch_id),
                UpdateExpression="SET " + ", ".join(sets) + tail,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except self._ddb.exceptions.ConditionalCheckFailedException:
            log.info("lost batch race", extra={"batch_id": batch_id, "target": target.value})
            return False
        return True

    async def claim_archive(self, batch: Batch) -> bool:
        """Take on building an ARCHIVING batch's ZIP (or one whose builder went quiet):
        only if nobody touched the record since ``batch`` was read, so one replica wins."""
        try:
            await self._ddb.update_item(
                TableName=self._table,
                Key=record_key(batch.id),
                UpdateExpression="SET live_state = :building, updated_at = :now",
                ConditionExpression="#state = :archiving AND updated_at = :seen",
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues={
                    ":building": {"S": BUILDING},
                    ":now": {"S": _ts(utcnow())},
                    ":archiving": {"S": BatchState.ARCHIVING.value},
                    ":seen": {"S": _ts(batch.updated_at)},
                },
            )
        except self._ddb.exceptions.ConditionalCheckFailedException:
            return False
        return True

    async def end_if_complete(self, batch_id: str) -> bool:
        """Once every item has ended, hand the batch to the archiver (ARCHIVING). Safe to
        call any number of times, from any process: only one call wins the move."""
        batch = await self.get(batch_id)
        if batch is None or not batch.complete:
            return False
        return await self.advance(
            batch_id, (BatchState.SUBMITTING, BatchState.RUNNING), BatchState.ARCHIVING
        )

    async def waiting(self, live: str, older_than: datetime, limit: int = 25) -> list[str]:
        """Ids of batches whose ``live_state`` is ``live`` (``live_state(state)`` or
        ``BUILDING``) and whose last update is older than ``older_than``."""
        response = await self._ddb.query(
            TableName=self._table,
            IndexName=LIVE_INDEX,
            KeyConditionExpression="live_state = :state AND updated_at < :cutoff",
            ExpressionAttributeValues={
                ":state": {"S": live},
                ":cutoff": {"S": _ts(older_than)},
            },
            Limit=limit,
        )
        return [
            record["id"]["S"].removeprefix(RECORD_PREFIX) for record in response.get("Items", [])
        ]

"""The meme item in DynamoDB and its state machine (docs/architecture.md, invariant 3).

State moves forward only: PENDING → [QUEUED →] [RENDERING →] DONE | FAILED, each step
one conditional write on the current state. The consumer no longer writes QUEUED (the
request carries what it needs; items of an older consumer still show it), and RENDERING
is optional: the renderer marks only a render still running after a moment, so a fast
one goes PENDING → DONE in one write.
Losing that condition is a normal race (another worker got there first): it is logged
and reported as ``False``, never raised.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from collections.abc import Awaitable, Callable, Container, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from memeforge_common.backoff import Backoff
from memeforge_common.batches import BatchStore, count_end
from memeforge_common.batches import to_dynamo as batch_record
from memeforge_common.indexes import BATCH_INDEX, LIVE_INDEX
from memeforge_common.limits import MAX_DELIVERY_RECORDS
from memeforge_common.metrics import TRANSITION_RESULTS
from memeforge_common.models import (
    SCHEMA_VERSION,
    Batch,
    Channel,
    DeliveryAttempt,
    EventType,
    Failure,
    MemeItem,
    MemeResult,
    MemeState,
    MemeStatus,
    Notify,
    RenderSpec,
    first_error,
    utcnow,
)
from memeforge_common.tenancy import TENANT_INDEX, tenant_kind

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

log = logging.getLogger(__name__)


# Another sparse index: ``notify_due`` (the event) exists from the write that ends a meme
# that asked to be notified until its notifications are on the queue, so the sweeper
# finds an ending whose enqueue was lost (a worker died between the two).
NOTIFY_INDEX = "notify-due"
# The change feed: every write that moves ``updated_at`` also sets ``feed`` to the
# minute of that stamp, so one Query of (this minute, updated_at > since) lists what
# changed lately, with the fields waiters need, whatever the number of waiters.
CHANGES_INDEX = "changes"
MEME_KIND = "meme"

# Which states may move to which: the whole state machine in one table.
TRANSITIONS: dict[MemeState, frozenset[MemeState]] = {
    # PENDING → DONE: the consumer does not write QUEUED, and a fast render is never
    # marked RENDERING (renderer/marking.py). QUEUED: written by older consumers only.
    MemeState.PENDING: frozenset(
        {MemeState.QUEUED, MemeState.RENDERING, MemeState.DONE, MemeState.FAILED}
    ),
    MemeState.QUEUED: frozenset({MemeState.RENDERING, MemeState.DONE, MemeState.FAILED}),
    # RENDERING → RENDERING: a redelivered job after a worker died mid-render.
    MemeState.RENDERING: frozenset({MemeState.RENDERING, MemeState.DONE, MemeState.FAILED}),
    MemeState.DONE: frozenset(),
    MemeState.FAILED: frozenset(),
}


def sources_of(target: MemeState) -> frozenset[MemeState]:
    """Every state from which ``target`` may be entered."""
    return frozenset(src for src, dests in TRANSITIONS.items() if target in dests)


def can_transition(current: MemeState, target: MemeState) -> bool:
    return target in TRANSITIONS[current]


def _s(value: str) -> dict[str, Any]:
    return {"S": value}


def _n(value: int) -> dict[str, Any]:
    return {"N": str(value)}


def _ts(value: datetime) -> str:
    return value.isoformat(timespec="milliseconds")


def feed_bucket(stamp: datetime) -> str:
    """The change feed's partition for a write at ``stamp``: its minute (UTC)."""
    return stamp.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")


def feed_buckets(since: datetime, until: datetime) -> list[str]:
    """Every minute bucket from ``since``'s to ``until``'s, oldest first."""
    minute = since.astimezone(UTC).replace(second=0, microsecond=0)
    buckets = []
    while minute <= until:
        buckets.append(feed_bucket(minute))
        minute += timedelta(minutes=1)
    return buckets


def to_dynamo(item: MemeItem) -> dict[str, Any]:
    if item.spec is None:
        raise ValueError("an item is only ever written with a valid spec")
    record: dict[str, Any] = {
        "id": _s(item.id),
        "v": _n(item.v),
        "state": _s(item.state.value),
        "template_id": _s(item.template_id),
        "spec": _s(item.spec.model_dump_json()),
        "created_at": _s(_ts(item.created_at)),
        "updated_at": _s(_ts(item.updated_at)),
        "feed": _s(feed_bucket(item.updated_at)),
        "state_times": {"M": {k.value: _s(_ts(v)) for k, v in item.state_times.items()}},
        "attempts": _n(item.attempts),
        "sweeps": _n(item.sweeps),
    }
    if item.tenant:
        record["tenant"] = _s(item.tenant)
        record["tenant_kind"] = _s(tenant_kind(item.tenant, MEME_KIND))
    if item.expires_at is not None:
        record["expires_at"] = _n(int(item.expires_at.timestamp()))
    if not item.state.terminal:
        record["live_state"] = _s(item.state.value)
    if item.result is not None:
        record["result"] = _s(item.result.model_dump_json())
    if item.failure is not None:
        record["failure"] = _s(item.failure.model_dump_json())
    if item.traceparent is not None:
        record["traceparent"] = _s(item.traceparent)
    if item.batch_id is not None and item.batch_seq is not None:
        record["batch_id"] = _s(item.batch_id)
        record["batch_seq"] = _n(item.batch_seq)
    if item.notify is not None:
        record["notify"] = _s(item.notify.model_dump_json(exclude_none=True))
        # The map delivery attempts are appended to (record_delivery).
        record["deliveries"] = {"M": {}}
    if item.counted:
        record["counted"] = {"BOOL": True}
    return record


def _status_fields(record: dict[str, Any]) -> dict[str, Any]:
    result = record.get("result")
    failure = record.get("failure")
    return {
        "id": record["id"]["S"],
        "state": MemeState(record["state"]["S"]),
        "template_id": record["template_id"]["S"],
        "created_at": datetime.fromisoformat(record["created_at"]["S"]),
        "updated_at": datetime.fromisoformat(record["updated_at"]["S"]),
        "state_times": {
            MemeState(k): datetime.fromisoformat(v["S"])
            for k, v in record.get("state_times", {"M": {}})["M"].items()
        },
        "result": MemeResult.model_validate_json(result["S"]) if result else None,
        "failure": Failure.model_validate_json(failure["S"]) if failure else None,
        "attempts": int(record.get("attempts", {"N": "0"})["N"]),
        "tenant": record.get("tenant", {"S": ""})["S"],
        "expires_at": (
            datetime.fromtimestamp(int(record["expires_at"]["N"]), UTC)
            if "expires_at" in record
            else None
        ),
        "notify": Notify.model_validate_json(record["notify"]["S"]) if "notify" in record else None,
        "deliveries": {
            channel: tuple(DeliveryAttempt.model_validate_json(a["S"]) for a in value["L"])
            for channel, value in record.get("deliveries", {"M": {}})["M"].items()
        },
    }


def from_dynamo(record: dict[str, Any]) -> MemeItem:
    return MemeItem(
        v=int(record.get("v", {"N": SCHEMA_VERSION})["N"]),
        spec=_spec_or_none(record["id"]["S"], record["spec"]["S"]),
        sweeps=int(record.get("sweeps", {"N": "0"})["N"]),
        traceparent=record["traceparent"]["S"] if "traceparent" in record else None,
        batch_id=record["batch_id"]["S"] if "batch_id" in record else None,
        batch_seq=int(record["batch_seq"]["N"]) if "batch_seq" in record else None,
        counted=record.get("counted", {}).get("BOOL", False),
        **_status_fields(record),
    )


def status_of(record: dict[str, Any]) -> MemeStatus:
    return MemeStatus(**_status_fields(record))


def _spec_or_none(meme_id: str, raw: str) -> RenderSpec | None:
    """The stored spec, or None when it breaks today's limits: the item stays readable
    (its state, failure and result still show) and the consumer fails it."""
    try:
        return RenderSpec.model_validate_json(raw)
    except ValidationError as err:
        log.warning("stored spec is invalid: %s", first_error(err), extra={"meme_id": meme_id})
        return None


# The attributes a MemeStatus is made of: what waiters read (no spec).
STATUS_ATTRIBUTES = (
    "id",
    "state",
    "template_id",
    "created_at",
    "updated_at",
    "state_times",
    "result",
    "failure",
    "attempts",
    "tenant",
    "expires_at",
    "notify",
    "deliveries",
)
IN_FLIGHT_PREFIX = "inflight#"
_CONFLICT_RETRIES = 5
_CONFLICT_BACKOFF = Backoff(base_s=0.02, max_s=0.5)
# BatchGetItem's limit on keys per call.
BATCH_GET_KEYS = 100
_UNPROCESSED_RETRIES = 5
_UNPROCESSED_BACKOFF = Backoff(base_s=0.05, max_s=1.0)


def new_item(
    meme_id: str,
    template_id: str,
    spec: RenderSpec,
    traceparent: str | None = None,
    *,
    tenant: str = "",
    retention: timedelta | None = None,
    notify: Notify | None = None,
    batch: tuple[str, int] | None = None,
    counted: bool = False,
) -> MemeItem:
    """A PENDING meme; ``batch`` is (batch id, item number) for a batch's meme."""
    now = utcnow()
    return MemeItem(
        id=meme_id,
        state=MemeState.PENDING,
        template_id=template_id,
        spec=spec,
        created_at=now,
        updated_at=now,
        state_times={MemeState.PENDING: now},
        tenant=tenant,
        expires_at=now.replace(microsecond=0) + retention if retention else None,
        traceparent=traceparent,
        notify=notify if notify is not None and notify.channels else None,
        batch_id=batch[0] if batch else None,
        batch_seq=batch[1] if batch else None,
        counted=counted,
    )


class ItemExists(Exception):
    """A PutItem for a new meme found an item with the same id."""


class InFlightCapReached(Exception):
    """The tenant already has its cap of memes in flight."""


class ItemMoved(Exception):
    """The item changed state between our read and a write conditioned on that state."""


class InvalidCursor(ValueError):
    """A page cursor this store did not hand out (or for another tenant)."""


def _encode_cursor(last_key: dict[str, Any]) -> str:
    plain = {name: value["S"] for name, value in last_key.items()}
    return base64.urlsafe_b64encode(json.dumps(plain).encode()).decode()


def _encode_batch_cursor(last_key: dict[str, Any]) -> str:
    plain = {"id": last_key["id"]["S"], "seq": int(last_key["batch_seq"]["N"])}
    return base64.urlsafe_b64encode(json.dumps(plain).encode()).decode()


def _decode_batch_cursor(cursor: str, batch_id: str) -> dict[str, Any]:
    try:
        plain = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (binascii.Error, ValueError, UnicodeError) as err:
        raise InvalidCursor(cursor) from err
    if (
        not isinstance(plain, dict)
        or set(plain) != {"id", "seq"}
        or not isinstance(plain["id"], str)
        or type(plain["seq"]) is not int
    ):
        raise InvalidCursor(cursor)
    # The batch comes from the caller's own (checked) batch, never from the cursor.
    return {"id": _s(plain["id"]), "batch_id": _s(batch_id), "batch_seq": _n(plain["seq"])}


def _decode_cursor(cursor: str, kind: str) -> dict[str, Any]:
    try:
        plain = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (binascii.Error, ValueError, UnicodeError) as err:
        raise InvalidCursor(cursor) from err
    names = {"id", "tenant_kind", "created_at"}
    if (
        not isinstance(plain, dict)
        or set(plain) != names
        or not all(isinstance(v, str) for v in plain.values())
        or plain["tenant_kind"] != kind  # never page through another tenant's index range
    ):
        raise InvalidCursor(cursor)
    return {name: _s(value) for name, value in plain.items()}


def slot_key(tenant: str) -> dict[str, Any]:
    """The counter of a tenant's memes in flight: ``n``, in the memes table."""
    return {"id": _s(IN_FLIGHT_PREFIX + tenant)}


class MemeStore:
    """Memes, and each tenant's count of memes in flight.

    The in-flight cap: a counted item (``MemeItem.counted``) takes a slot of its tenant's
    counter in the same TransactWriteItems that creates it (``n < cap``, else nothing is
    written), and frees it in the same TransactWriteItems that makes it terminal (or
    deletes it while live), conditioned on the item still being counted: the transition
    removes the mark, so the slot is freed exactly once, whoever ends the meme (renderer,
    consumer, sweeper, dead-letter drain, DELETE). Each is one AWS call, as the PutItem or
    UpdateItem it replaces. The counter is exact: DynamoDB serialises the writes on it.
    """

    def __init__(self, dynamodb: DynamoDBClient, table: str) -> None:
        self._ddb = dynamodb
        self._table = table
        self._batches = BatchStore(dynamodb, table)

    async def create(self, item: MemeItem, *, slot_taken: bool = False) -> None:
        """Write a new item that holds no in-flight slot, or (``slot_taken``) a counted one
        whose slot its batch took already (create_batch)."""
        if item.counted != slot_taken:
            raise ValueError("a counted item is written by create_counted or for its batch")
        try:
            await self._ddb.put_item(
                TableName=self._table,
                Item=to_dynamo(item),
                ConditionExpression="attribute_not_exists(id)",
            )
        except self._ddb.exceptions.ConditionalCheckFailedException as err:
            raise ItemExists(item.id) from err

    async def create_counted(self, item: MemeItem, in_flight_cap: int) -> None:
        """Write a new counted item and take one of its tenant's ``in_flight_cap`` slots,
        in one write (InFlightCapReached when none is free: nothing is written)."""
        if not item.counted or in_flight_cap < 1:
            raise ValueError("create_counted writes a counted item, against a cap")
        failed = await self._transact(
            lambda: self._ddb.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": to_dynamo(item),
                            "ConditionExpression": "attribute_not_exists(id)",
                        }
                    },
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": slot_key(item.tenant),
                            "UpdateExpression": "ADD n :one",
                            "ConditionExpression": "attribute_not_exists(n) OR n < :cap",
                            "ExpressionAttributeValues": {":one": _n(1), ":cap": _n(in_flight_cap)},
                        }
                    },
                ]
            )
        )
        if 0 in failed:
            raise ItemExists(item.id)  # a replay, or an SDK retry of a write that landed
        if 1 in failed:
            raise InFlightCapReached(item.tenant)

    async def create_batch(self, batch: Batch, in_flight_cap: int) -> bool:
        """Write a new batch record and, when the tenant has a cap, take a slot for each of
        its items in the same write (all or none: InFlightCapReached, nothing written).
        False when a batch with this id exists already."""
        if in_flight_cap < 1:
            return await self._batches.create(batch)
        if not batch.counted or batch.total > in_flight_cap:
            raise InFlightCapReached(batch.tenant)
        failed = await self._transact(
            lambda: self._ddb.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": batch_record(batch),
                            "ConditionExpression": "attribute_not_exists(id)",
                        }
                    },
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": slot_key(batch.tenant),
                            "UpdateExpression": "ADD n :total",
                            "ConditionExpression": "attribute_not_exists(n) OR n <= :room",
                            "ExpressionAttributeValues": {
                                ":total": _n(batch.total),
                                ":room": _n(in_flight_cap - batch.total),
                            },
                        }
                    },
                ]
            )
        )
        if 0 in failed:
            return False
        if 1 in failed:
            raise InFlightCapReached(batch.tenant)
        return True

    async def in_flight(self, tenant: str) -> int:
        """How many memes ``tenant`` has in flight (the counter)."""
        response = await self._ddb.get_item(
            TableName=self._table, Key=slot_key(tenant), ConsistentRead=True
        )
        return int(response.get("Item", {}).get("n", {"N": "0"})["N"])

    async def _transact(self, write: Callable[[], Awaitable[Any]]) -> set[int]:
        """Run a TransactWriteItems; the indexes of its actions whose condition failed
        (empty: it was written). A transaction that lost to a concurrent one on the same
        item (the tenant's counter) wrote nothing and is tried again, with backoff."""
        for attempt in range(_CONFLICT_RETRIES + 1):
            if attempt:
                await asyncio.sleep(_CONFLICT_BACKOFF.delay(attempt))
            try:
                await write()
                return set()
            except self._ddb.exceptions.TransactionCanceledException as err:
                reasons: Any = err.response.get("CancellationReasons", [])
                codes = [reason.get("Code", "None") for reason in reasons]
                failed = {i for i, code in enumerate(codes) if code == "ConditionalCheckFailed"}
                if failed or "TransactionConflict" not in codes or attempt == _CONFLICT_RETRIES:
                    if failed:
                        return failed
                    raise
        raise AssertionError("unreachable")

    async def get(self, meme_id: str, *, consistent: bool = True) -> MemeItem | None:
        response = await self._ddb.get_item(
            TableName=self._table, Key={"id": _s(meme_id)}, ConsistentRead=consistent
        )
        record = response.get("Item")
        return from_dynamo(record) if record else None

    async def page(
        self, tenant: str, *, limit: int, cursor: str | None = None
    ) -> tuple[list[MemeItem], str | None]:
        """One page of a tenant's memes, newest first, from the tenant index (no Scan)."""
        kind = tenant_kind(tenant, MEME_KIND)
        params: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": TENANT_INDEX,
            "KeyConditionExpression": "tenant_kind = :kind",
            "ExpressionAttributeValues": {":kind": _s(kind)},
            "ScanIndexForward": False,
            "Limit": limit,
        }
        if cursor:
            params["ExclusiveStartKey"] = _decode_cursor(cursor, kind)
        response = await self._ddb.query(**params)
        items = [from_dynamo(record) for record in response.get("Items", [])]
        last = response.get("LastEvaluatedKey")
        return items, _encode_cursor(last) if last else None

    async def batch_page(
        self, batch_id: str, *, limit: int, cursor: str | None = None
    ) -> tuple[list[MemeStatus], str | None]:
        """One page of a batch's memes in item order, from the batch index (no Scan)."""
        params: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": BATCH_INDEX,
            "KeyConditionExpression": "batch_id = :batch",
            "ExpressionAttributeValues": {":batch": _s(batch_id)},
            "Limit": limit,
        }
        if cursor:
            params["ExclusiveStartKey"] = _decode_batch_cursor(cursor, batch_id)
        response = await self._ddb.query(**params)
        items = [status_of(record) for record in response.get("Items", [])]
        last = response.get("LastEvaluatedKey")
        return items, _encode_batch_cursor(last) if last else None

    async def delete(self, item: MemeItem) -> None:
        """Delete an item as it was read; a live counted one frees its slot in the same
        write (ItemMoved when it changed state since: read it again)."""
        if not (item.counted and not item.state.terminal):
            await self._ddb.delete_item(TableName=self._table, Key={"id": _s(item.id)})
            return
        failed = await self._transact(
            lambda: self._ddb.transact_write_items(
                TransactItems=[
                    {
                        "Delete": {
                            "TableName": self._table,
                            "Key": {"id": _s(item.id)},
                            "ConditionExpression": "#state = :state AND counted = :true",
                            "ExpressionAttributeNames": {"#state": "state"},
                            "ExpressionAttributeValues": {
                                ":state": _s(item.state.value),
                                ":true": {"BOOL": True},
                            },
                        }
                    },
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": slot_key(item.tenant),
                            "UpdateExpression": "ADD n :minus_one",
                            "ExpressionAttributeValues": {":minus_one": _n(-1)},
                        }
                    },
                ]
            )
        )
        if failed:
            raise ItemMoved(item.id)

    async def stamps(self, meme_ids: Sequence[str]) -> tuple[dict[str, datetime], int]:
        """``updated_at`` of each existing item (a tiny projection: cheap to fetch and to
        parse, so a watcher reads full statuses only of what changed), and the calls."""
        records, calls = await self._batch_get(meme_ids, ("id", "updated_at"))
        return {r["id"]["S"]: datetime.fromisoformat(r["updated_at"]["S"]) for r in records}, calls

    async def statuses(self, meme_ids: Sequence[str]) -> tuple[dict[str, MemeStatus], int]:
        """The status of each existing item, and the calls it took."""
        records, calls = await self._batch_get(meme_ids, STATUS_ATTRIBUTES)
        statuses = (MemeStatus(**_status_fields(record)) for record in records)
        return {status.id: status for status in statuses}, calls

    async def changes(
        self, since: datetime, until: datetime, wanted: Container[str]
    ) -> tuple[dict[str, MemeStatus], int]:
        """The latest status of each meme in ``wanted`` whose ``updated_at`` is within
        [``since``, ``until``], from the change feed (one Query per minute bucket, pages followed),
        and the calls it took. The index is eventually consistent: a change may show a
        little late, never as a state the item did not have."""
        found: dict[str, MemeStatus] = {}
        calls = 0
        for bucket in feed_buckets(since, until):
            params: dict[str, Any] = {
                "TableName": self._table,
                "IndexName": CHANGES_INDEX,
                "KeyConditionExpression": "feed = :feed AND updated_at BETWEEN :since AND :until",
                "ExpressionAttributeValues": {
                    ":feed": _s(bucket),
                    ":since": _s(_ts(since)),
                    ":until": _s(_ts(until)),
                },
            }
            while True:
                response = await self._ddb.query(**params)
                calls += 1
                for record in response.get("Items", []):
                    if record["id"]["S"] in wanted:  # parse only what someone waits on
                        status = MemeStatus(**_status_fields(record))
                        found[status.id] = status
                last = response.get("LastEvaluatedKey")
                if not last:
                    break
                params["ExclusiveStartKey"] = last
        return found, calls

    async def _batch_get(
        self, meme_ids: Sequence[str], attributes: Sequence[str]
    ) -> tuple[list[dict[str, Any]], int]:
        """Consistent BatchGetItem reads, 100 keys a call, the calls in parallel; keys
        left unprocessed (throttling) are retried with backoff, then left out."""
        names = {f"#a{i}": name for i, name in enumerate(attributes)}
        chunks = [meme_ids[i : i + BATCH_GET_KEYS] for i in range(0, len(meme_ids), BATCH_GET_KEYS)]
        results = await asyncio.gather(*(self._batch_get_chunk(c, names) for c in chunks))
        records = [record for found, _ in results for record in found]
        return records, sum(calls for _, calls in results)

    async def _batch_get_chunk(
        self, meme_ids: Sequence[str], names: dict[str, str]
    ) -> tuple[list[dict[str, Any]], int]:
        keys: list[Any] = [{"id": _s(i)} for i in meme_ids]
        found: list[dict[str, Any]] = []
        calls = 0
        for attempt in range(_UNPROCESSED_RETRIES + 1):
            if attempt:
                await asyncio.sleep(_UNPROCESSED_BACKOFF.delay(attempt))  # throttled
            request: Any = {
                "Keys": keys,
                "ConsistentRead": True,
                "ProjectionExpression": ", ".join(names),
                "ExpressionAttributeNames": names,
            }
            response = await self._ddb.batch_get_item(RequestItems={self._table: request})
            calls += 1
            found += response.get("Responses", {}).get(self._table, [])
            unprocessed: Any = response.get("UnprocessedKeys", {})
            keys = unprocessed.get(self._table, {}).get("Keys", [])
            if not keys:
                return found, calls
        log.warning("batch read left %d keys unprocessed", len(keys))
        return found, calls

    async def transition(
        self,
        meme_id: str,
        target: MemeState,
        *,
        result: MemeResult | None = None,
        failure: Failure | None = None,
        attempts: int | None = None,
        slot: str | None = None,
        notify_due: EventType | None = None,
        at: datetime | None = None,
        batch_id: str | None = None,
    ) -> bool:
        """Move the item to ``target`` if its current state allows it; False on a lost race.

        ``slot``: the tenant whose in-flight slot the item holds (``in_flight_slot`` of the
        item or its job), None when it holds none. A terminal transition frees it in the
        same write; it is a condition of the write, so a wrong one loses, never drifts.
        ``notify_due``: mark, in the same write, that this ending's notifications are to be
        enqueued (``notified`` clears it once they are). ``batch_id``: the end of a batch's
        meme also counts on the batch, in the same write, so it counts exactly when the
        conditional transition happens."""
        stamp = at or utcnow()
        update, condition, names, values = _transition_expression(
            target, result, failure, attempts, notify_due, stamp
        )
        if target.terminal and slot is not None:
            update += " REMOVE live_state, counted"
            condition += " AND counted = :true AND tenant = :tenant"
            values |= {":true": {"BOOL": True}, ":tenant": _s(slot)}
        elif target.terminal:
            update += " REMOVE live_state"
            condition += " AND attribute_not_exists(counted)"
        steps: list[dict[str, Any]] = [
            {
                "Update": {
                    "TableName": self._table,
                    "Key": {"id": _s(meme_id)},
                    "UpdateExpression": update,
                    "ConditionExpression": condition,
                    "ExpressionAttributeNames": names,
                    "ExpressionAttributeValues": values,
                }
            }
        ]
        if target.terminal and slot is not None:
            steps.append(
                {
                    "Update": {
                        "TableName": self._table,
                        "Key": slot_key(slot),
                        "UpdateExpression": "ADD n :minus_one",
                        "ExpressionAttributeValues": {":minus_one": _n(-1)},
                    }
                }
            )
        counts_on_batch = target.terminal and batch_id is not None
        if counts_on_batch:
            assert batch_id is not None
            steps.append(count_end(batch_id, target, self._table, _ts(stamp)))
        won = await self._write(steps, batch_last=counts_on_batch)
        if not won:
            log.info("lost transition race", extra={"meme_id": meme_id, "target": target.value})
        TRANSITION_RESULTS.labels(target.value, "won" if won else "lost").inc()
        if won and counts_on_batch:
            assert batch_id is not None
            await self._batches.end_if_complete(batch_id)
        return won

    async def _write(self, steps: list[dict[str, Any]], *, batch_last: bool) -> bool:
        """The item's update (``steps[0]``) alone, or with its slot release and batch count
        in one TransactWriteItems; False when the item's condition failed."""
        if len(steps) == 1:
            try:
                await self._ddb.update_item(**steps[0]["Update"])
            except self._ddb.exceptions.ConditionalCheckFailedException:
                return False
            return True
        transaction: Any = steps
        failed = await self._transact(
            lambda: self._ddb.transact_write_items(TransactItems=transaction)
        )
        if not failed:
            return True
        if 0 in failed or not batch_last:
            return False
        # Only the batch's condition failed: its record is gone (retention). The meme ends.
        return await self._write(steps[:-1], batch_last=False)

    async def stuck(self, state: MemeState, older_than: datetime, limit: int = 100) -> list[str]:
        """Ids of live items in ``state`` whose last update is older than ``older_than``."""
        response = await self._ddb.query(
            TableName=self._table,
            IndexName=LIVE_INDEX,
            KeyConditionExpression="live_state = :state AND updated_at < :cutoff",
            ExpressionAttributeValues={":state": _s(state.value), ":cutoff": _s(_ts(older_than))},
            Limit=limit,
        )
        return [record["id"]["S"] for record in response.get("Items", [])]

    async def notify_due(
        self, event: EventType, older_than: datetime, limit: int = 100
    ) -> list[str]:
        """Ids of memes that ended with ``event`` before ``older_than`` and whose
        notifications were never confirmed enqueued."""
        response = await self._ddb.query(
            TableName=self._table,
            IndexName=NOTIFY_INDEX,
            KeyConditionExpression="notify_due = :event AND updated_at < :cutoff",
            ExpressionAttributeValues={":event": _s(event), ":cutoff": _s(_ts(older_than))},
            Limit=limit,
        )
        return [record["id"]["S"] for record in response.get("Items", [])]

    async def notified(self, meme_id: str) -> None:
        """The ending's notifications are on the queue: take the item off the index."""
        await self._ddb.update_item(
            TableName=self._table, Key={"id": _s(meme_id)}, UpdateExpression="REMOVE notify_due"
        )

    async def record_delivery(
        self, subject_id: str, channel: Channel, attempt: DeliveryAttempt
    ) -> bool:
        """Append a delivery attempt to the item (at most MAX_DELIVERY_RECORDS per
        channel). False when the item is gone or its record is full."""
        try:
            await self._ddb.update_item(
                TableName=self._table,
                Key={"id": _s(subject_id)},
                UpdateExpression=(
                    "SET deliveries.#ch = list_append(if_not_exists(deliveries.#ch, :none), :new)"
                ),
                ConditionExpression=(
                    "attribute_exists(deliveries) AND "
                    "(attribute_not_exists(deliveries.#ch) OR size(deliveries.#ch) < :max)"
                ),
                ExpressionAttributeNames={"#ch": channel},
                ExpressionAttributeValues={
                    ":none": {"L": []},
                    ":new": {"L": [_s(attempt.model_dump_json())]},
                    ":max": _n(MAX_DELIVERY_RECORDS),
                },
            )
        except self._ddb.exceptions.ConditionalCheckFailedException:
            log.info("delivery attempt not recorded", extra={"meme_id": subject_id})
            return False
        return True

    async def mark_swept(self, item: MemeItem) -> bool:
        """Count one sweep of a stuck item, only if nobody touched it since we read it."""
        stamp = utcnow()
        try:
            await self._ddb.update_item(
                TableName=self._table,
                Key={"id": _s(item.id)},
                UpdateExpression="SET updated_at = :now, feed = :feed ADD sweeps :one",
                ConditionExpression="#state = :state AND updated_at = :seen",
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues={
                    ":now": _s(_ts(stamp)),
                    ":feed": _s(feed_bucket(stamp)),
                    ":one": _n(1),
                    ":state": _s(item.state.value),
                    ":seen": _s(_ts(item.updated_at)),
                },
            )
        except self._ddb.exceptions.ConditionalCheckFailedException:
            return False
        return True


def _transition_expression(
    target: MemeState,
    result: MemeResult | None,
    failure: Failure | None,
    attempts: int | None,
    notify_due: EventType | None = None,
    at: datetime | None = None,
) -> tuple[str, str, dict[str, str], dict[str, Any]]:
    """The UpdateItem parts that move an item to ``target`` from any state that may
    enter it (update, condition, names, values), before the terminal and slot parts."""
    sources = sorted(s.value for s in sources_of(target))
    stamp = at or utcnow()
    names = {"#state": "state", "#target": target.value}
    values: dict[str, Any] = {
        ":target": _s(target.value),
        ":now": _s(_ts(stamp)),
        ":feed": _s(feed_bucket(stamp)),
    }
    sets = ["#state = :target", "updated_at = :now", "feed = :feed", "state_times.#target = :now"]
    if not target.terminal:
        sets.append("live_state = :target")
    placeholders = []
    for i, src in enumerate(sources):
        values[f":src{i}"] = _s(src)
        placeholders.append(f":src{i}")
    if result is not None:
        sets.append("#result = :result")
        names["#result"] = "result"
        values[":result"] = _s(result.model_dump_json())
    if failure is not None:
        sets.append("failure = :failure")
        values[":failure"] = _s(failure.model_dump_json())
    if attempts is not None:
        sets.append("attempts = :attempts")
        values[":attempts"] = _n(attempts)
    if notify_due is not None:
        sets.append("notify_due = :due")
        values[":due"] = _s(notify_due)
    update = "SET " + ", ".join(sets)
    condition = f"attribute_exists(id) AND #state IN ({', '.join(placeholders)})"
    return update, condition, names, values

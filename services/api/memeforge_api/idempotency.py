"""``Idempotency-Key`` for POST /memes: same key + same body → the same meme.

One conditional PutItem claims the key (the Lambda Powertools pattern): the first
request to claim it picks the meme id; for every later one the failed condition
returns the claim (``ReturnValuesOnConditionCheckFailure``, so no second read and no
race with TTL in between), which either replays that meme (same body) or is refused
(different body → 409). Records live in
the memes table under their own key space and expire through DynamoDB TTL.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

KEY_PREFIX = "idempotency#"


class IdempotencyConflict(Exception):
    """The key was already used with a different request body."""


@dataclass(frozen=True)
class Claim:
    meme_id: str
    replay: bool  # True when an earlier request already claimed the key


def fingerprint(canonical_body: str) -> str:
    return hashlib.sha256(canonical_body.encode()).hexdigest()


class IdempotencyRecords:
    def __init__(self, dynamodb: DynamoDBClient, table: str, ttl_s: int) -> None:
        self._ddb = dynamodb
        self._table = table
        self._ttl_s = ttl_s

    async def claim(self, tenant: str, key: str, body_fingerprint: str, meme_id: str) -> Claim:
        """Keys are per tenant: two tenants using the same key never meet."""
        record_id = KEY_PREFIX + hashlib.sha256(f"{tenant}\n{key}".encode()).hexdigest()
        now = int(time.time())
        try:
            await self._ddb.put_item(
                TableName=self._table,
                Item={
                    "id": {"S": record_id},
                    "meme_id": {"S": meme_id},
                    "fingerprint": {"S": body_fingerprint},
                    "expires_at": {"N": str(now + self._ttl_s)},
                },
                # An expired record may linger until TTL deletes it: it counts as free.
                ConditionExpression="attribute_not_exists(id) OR expires_at < :now",
                ExpressionAttributeValues={":now": {"N": str(now)}},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
            return Claim(meme_id=meme_id, replay=False)
        except self._ddb.exceptions.ConditionalCheckFailedException as err:
            record = err.response["Item"]  # type: ignore[typeddict-item]
        if record["fingerprint"]["S"] != body_fingerprint:
            raise IdempotencyConflict(key)
        return Claim(meme_id=record["meme_id"]["S"], replay=True)

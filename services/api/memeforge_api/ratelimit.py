"""Per-key request rate with a burst, shared by every api replica through DynamoDB.

GCRA (the generic cell rate algorithm, a token bucket in one number): each key has a
theoretical arrival time ``tat``. A request at ``now`` is admitted when the key is idle
(``tat <= now``: set ``tat = now + T``) or busy but within its burst (``now < tat <= now +
(burst-1)·T``: ``tat += T``), where ``T = 60 s / rate``. Each branch is one conditional
UpdateItem, so replicas never over-admit: DynamoDB serialises the writes on the item.
Precision: exact up to the clock skew between api hosts (NTP keeps it to milliseconds).
Cost: one UpdateItem per admitted request when the path guessed from the key's last
request is right, two when not, plus a GetItem per refusal (for Retry-After).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

KEY_PREFIX = "rate#"
POLICY = "per-key"
MAX_HINTS = 10_000


@dataclass(frozen=True)
class Decision:
    admitted: bool
    limit: int  # the burst: requests admitted at once from idle
    window_s: int  # time for a drained budget to refill completely
    remaining: int
    reset_s: int  # seconds until the budget is full again
    retry_after_s: int = 0

    def headers(self) -> dict[str, str]:
        """IETF httpapi ratelimit-headers draft fields."""
        headers = {
            "RateLimit-Policy": f'"{POLICY}";q={self.limit};w={self.window_s}',
            "RateLimit": f'"{POLICY}";r={self.remaining};t={self.reset_s}',
        }
        if not self.admitted:
            headers["Retry-After"] = str(self.retry_after_s)
        return headers


class RateLimiter:
    def __init__(
        self, dynamodb: DynamoDBClient, table: str, *, per_minute: int, burst: int
    ) -> None:
        self._ddb = dynamodb
        self._table = table
        self._interval_ms = 60_000 / per_minute
        self._burst = burst
        self._busy: dict[str, bool] = {}  # key id → was it busy last time (which branch first)

    async def check(self, key_id: str) -> Decision:
        now_ms = int(time.time() * 1000)
        branches = (self._busy_branch, self._idle_branch)
        if not self._busy.get(key_id, False):
            branches = branches[::-1]
        for branch in branches:
            tat = await branch(key_id, now_ms)
            if tat is not None:
                self._remember(key_id, busy=branch == self._busy_branch)
                return self._decision(True, tat, now_ms)
        self._remember(key_id, busy=True)
        item = (
            await self._ddb.get_item(
                TableName=self._table, Key={"id": {"S": KEY_PREFIX + key_id}}, ConsistentRead=True
            )
        ).get("Item")
        tat = int(item["tat"]["N"]) if item else now_ms
        return self._decision(False, tat, now_ms)

    def _decision(self, admitted: bool, tat_ms: int, now_ms: int) -> Decision:
        t = self._interval_ms
        ahead = max(0, tat_ms - now_ms)
        remaining = max(0, math.floor((self._burst * t - ahead) / t))
        ceiling = (self._burst - 1) * t
        return Decision(
            admitted=admitted,
            limit=self._burst,
            window_s=math.ceil(self._burst * t / 1000),
            remaining=remaining,
            reset_s=math.ceil(ahead / 1000),
            retry_after_s=max(1, math.ceil((ahead - ceiling) / 1000)),
        )

    def _remember(self, key_id: str, *, busy: bool) -> None:
        if key_id not in self._busy and len(self._busy) >= MAX_HINTS:
            self._busy.pop(next(iter(self._busy)))
        self._busy[key_id] = busy

    async def _idle_branch(self, key_id: str, now_ms: int) -> int | None:
        tat = now_ms + round(self._interval_ms)
        return await self._update(
            key_id,
            "SET tat = :tat, expires_at = :exp",
            "attribute_not_exists(tat) OR tat <= :now",
            {":tat": tat, ":now": now_ms, ":exp": tat // 1000 + 60},
        )

    async def _busy_branch(self, key_id: str, now_ms: int) -> int | None:
        ceiling = now_ms + round((self._burst - 1) * self._interval_ms)
        return await self._update(
            key_id,
            "SET tat = tat + :t, expires_at = :exp",
            "tat > :now AND tat <= :ceiling",
            {
                ":t": round(self._interval_ms),
                ":now": now_ms,
                ":ceiling": ceiling,
                ":exp": (ceiling + round(self._interval_ms)) // 1000 + 60,
            },
        )

    async def _update(
        self, key_id: str, update: str, condition: str, values: dict[str, int]
    ) -> int | None:
        """The new tat, or None when the condition did not hold."""
        try:
            response = await self._ddb.update_item(
                TableName=self._table,
                Key={"id": {"S": KEY_PREFIX + key_id}},
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeValues={k: {"N": str(v)} for k, v in values.items()},
                ReturnValues="ALL_NEW",  # moto's UPDATED_NEW was seen to omit tat
            )
        except self._ddb.exceptions.ConditionalCheckFailedException:
            return None
        return int(response["Attributes"]["tat"]["N"])


class RateLimitHeadersMiddleware:
    """Adds the RateLimit fields of the request's decision (if any) to its response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            decision = scope.get("state", {}).get("rate_limit")
            if message["type"] == "http.response.start" and isinstance(decision, Decision):
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [
                    (name.lower().encode(), value.encode())
                    for name, value in decision.headers().items()
                    if name.lower().encode() not in present
                ]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)

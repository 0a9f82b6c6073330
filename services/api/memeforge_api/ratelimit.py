"""Per-key request rate with a burst, shared by every api replica through DynamoDB.

GCRA (the generic cell rate algorithm, a token bucket in one number): each key has a
theoretical arrival time ``tat``. A request at ``now`` is admitted when the key is idle
(``tat <= now``: set ``tat = now + T``) or busy but within its burst (``now < tat <= now +
(burst-1)·T``: ``tat += T``), where ``T = 60 s / rate``. Each branch is one conditional
UpdateItem, so replicas never over-admit: DynamoDB serialises the writes on the item.
Precision: exact up to the clock skew between api hosts (NTP keeps it to milliseconds),
with T rounded to whole milliseconds, and a request whose write was retried by the SDK
may be charged twice.
Cost: one UpdateItem per admitted request when the path guessed from the key's last
request is right, two when not, plus a GetItem per refusal (for Retry-After).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

log = logging.getLogger("memeforge.api")

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
        # The emission interval T in whole ms (1200/min: 50 ms), at least 1 ms.
        self._t = max(1, round(60_000 / per_minute))
        self._burst = burst
        self._busy: dict[str, bool] = {}  # key id → was it busy last time (which branch first)

    async def check(self, key_id: str) -> Decision:
        for attempt in (1, 2):
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
                    TableName=self._table,
                    Key={"id": {"S": KEY_PREFIX + key_id}},
                    ConsistentRead=True,
                )
            ).get("Item")
            tat = int(item["tat"]["N"]) if item else now_ms
            # Both conditions failed, yet the budget has room: a write of ours landed but
            # its response was lost and botocore's retry then failed the condition. Try
            # once more (that request may be charged twice: the tolerance we accept).
            if attempt == 1 and tat - now_ms <= (self._burst - 1) * self._t:
                continue
            log.info("rate limited", extra={"key_id": key_id, "ahead_ms": tat - now_ms})
            return self._decision(False, tat, now_ms)
        raise AssertionError("unreachable")

    def _decision(self, admitted: bool, tat_ms: int, now_ms: int) -> Decision:
        t = self._t
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
        tat = now_ms + self._t
        return await self._update(
            key_id,
            "SET tat = :tat, expires_at = :exp",
            "attribute_not_exists(tat) OR tat <= :now",
            {":tat": tat, ":now": now_ms, ":exp": tat // 1000 + 60},
        )

    async def _busy_branch(self, key_id: str, now_ms: int) -> int | None:
        ceiling = now_ms + (self._burst - 1) * self._t
        return await self._update(
            key_id,
            "SET tat = tat + :t, expires_at = :exp",
            "tat > :now AND tat <= :ceiling",
            {
                ":t": self._t,
                ":now": now_ms,
                ":ceiling": ceiling,
                ":exp": (ceiling + self._t) // 1000 + 60,
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

"""Per-key request rate with a burst, shared by every api replica through DynamoDB.

GCRA (the generic cell rate algorithm, a token bucket in one number): each key has a
theoretical arrival time ``tat``. A request at ``now`` is admitted when the key is idle
(``tat <= now``: set ``tat = now + T``) or busy but within its burst (``now < tat <= now +
(burst-1)·T``: ``tat += T``), where ``T = 60 s / rate``. Each branch is one conditional
UpdateItem, so replicas never over-admit: DynamoDB serialises the writes on the item.
A write whose condition fails returns the item as it is (ReturnValuesOnConditionCheckFailure),
and the next write is the branch that tat calls for: the idle branch loses only to a
concurrent request that made the key busy, and the busy branch fails only past the burst,
so concurrent requests under the limit are never refused for having raced each other.
Precision: exact up to the clock skew between api hosts (NTP keeps it to milliseconds),
with T rounded to whole milliseconds, and a request whose write was retried by the SDK
may be charged twice.
Cost of a charge: one UpdateItem when the branch guessed from the key's last
request is right, two (rarely more) when not; one or two per refusal.

Leases: a key busy on one api process charges its tokens in chunks instead of one per
request: one write takes ``n`` tokens (``tat += n·T``, only within the burst) and the
process spends them locally for up to LEASE_S; one charge per key is in flight per
process at a time, and requests that come meanwhile wait for its lease. ``n`` starts
at 1, doubles when a lease runs out before it expires, halves when one expires, and
stays at most MAX_LEASE and a tenth of the burst (so a small burst stays exact).
Precision, given up for that: every token is charged in DynamoDB before it is spent,
but it may be spent up to LEASE_S after it was charged, so in any window a process may
admit up to its lease (≤ MAX_LEASE) more than exact GCRA would, and tokens left when a
lease expires are lost to the key (other replicas may see 429 up to that many requests
early). A key used at a steady trickle (one request per lease period or less) keeps
leases of 1: exact, as before.
Cost: about one UpdateItem per ``n`` requests of a busy key.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

log = logging.getLogger("memeforge.api")

KEY_PREFIX = "rate#"
POLICY = "per-key"
MAX_HINTS = 10_000
# Writes per check: a wrong guess, the other branch, then the busy branch once more if
# the check's own clock was too old. Between branch switches the check keeps its clock,
# so a lost idle write is followed by a busy write that only fails past the burst.
MAX_WRITES = 4
LEASE_S = 1.0  # leased tokens not spent within this long are dropped
MAX_LEASE = 16  # tokens charged by one write, at most (and at most a tenth of the burst)


@dataclass
class _Lease:
    size: int  # tokens the write took
    tokens: int  # still to spend
    expires: float  # time.monotonic()
    tat_ms: int  # the key's tat after the write (for the RateLimit fields)


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
        self._leases: dict[str, _Lease] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._max_lease = max(1, min(MAX_LEASE, burst // 10))

    async def check(self, key_id: str) -> Decision:
        # One charge in flight per key and process: requests that come meanwhile wait
        # for its lease instead of each charging (and racing) for their own.
        async with self._lock(key_id):
            return await self._check(key_id)

    def _lock(self, key_id: str) -> asyncio.Lock:
        lock = self._locks.get(key_id)
        if lock is None:
            if len(self._locks) >= MAX_HINTS:
                idle = next((k for k, held in self._locks.items() if not held.locked()), None)
                if idle is not None:
                    del self._locks[idle]
            lock = self._locks[key_id] = asyncio.Lock()
        return lock

    async def _check(self, key_id: str) -> Decision:
        now = time.monotonic()
        lease = self._leases.get(key_id)
        if lease is not None and now < lease.expires and lease.tokens > 0:
            lease.tokens -= 1  # charged already: no AWS call
            return self._decision(True, lease.tat_ms, int(time.time() * 1000))
        size = self._lease_size(lease, now)
        admitted, tat, now_ms = await self._charge(key_id, size)
        if not admitted and size > 1:  # near the end of the burst: one token, exactly
            size = 1
            admitted, tat, now_ms = await self._charge(key_id, 1)
        if admitted:
            self._keep_lease(key_id, _Lease(size, size - 1, now + LEASE_S, tat))
            return self._decision(True, tat, now_ms)
        log.info("rate limited", extra={"key_id": key_id, "ahead_ms": tat - now_ms})
        return self._decision(False, tat, now_ms)

    def _lease_size(self, last: _Lease | None, now: float) -> int:
        """Tokens to charge now: more while leases run out before they expire."""
        if last is None:
            return 1
        if now >= last.expires:
            return max(1, last.size // 2)
        return min(self._max_lease, last.size * 2)

    def _keep_lease(self, key_id: str, lease: _Lease) -> None:
        if key_id not in self._leases and len(self._leases) >= MAX_HINTS:
            self._leases.pop(next(iter(self._leases)))
        self._leases[key_id] = lease

    async def _charge(self, key_id: str, n: int) -> tuple[bool, int, int]:
        """Take ``n`` tokens of the key's budget in DynamoDB: (admitted, tat, now_ms)."""
        span = (self._burst - n) * self._t
        now_ms = int(time.time() * 1000)
        # The first branch to try: the one this key's last request took.
        tat = now_ms + 1 if self._busy.get(key_id, False) else now_ms
        for _ in range(MAX_WRITES):
            if tat > now_ms + span:
                # Past the burst by the clock this check started with; a check delayed
                # (a busy event loop) is judged again by the clock now, once.
                now_ms = max(now_ms, int(time.time() * 1000))
                if tat > now_ms + span:
                    break
            busy = tat > now_ms
            branch = self._busy_branch if busy else self._idle_branch
            admitted, tat = await branch(key_id, now_ms, n)
            if admitted:
                self._remember(key_id, busy=busy)
                return True, tat, now_ms
        self._remember(key_id, busy=True)
        return False, tat, now_ms

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

    async def _idle_branch(self, key_id: str, now_ms: int, n: int) -> tuple[bool, int]:
        tat = now_ms + n * self._t
        return await self._update(
            key_id,
            "SET tat = :tat, expires_at = :exp",
            "attribute_not_exists(tat) OR tat <= :now",
            {":tat": tat, ":now": now_ms, ":exp": tat // 1000 + 60},
            now_ms,
        )

    async def _busy_branch(self, key_id: str, now_ms: int, n: int) -> tuple[bool, int]:
        ceiling = now_ms + (self._burst - n) * self._t
        return await self._update(
            key_id,
            "SET tat = tat + :t, expires_at = :exp",
            "tat > :now AND tat <= :ceiling",
            {
                ":t": n * self._t,
                ":now": now_ms,
                ":ceiling": ceiling,
                ":exp": (ceiling + n * self._t) // 1000 + 60,
            },
            now_ms,
        )

    async def _update(
        self, key_id: str, update: str, condition: str, values: dict[str, int], now_ms: int
    ) -> tuple[bool, int]:
        """(True, the new tat), or (False, the tat that failed the condition; ``now_ms``
        when the key has none)."""
        try:
            response = await self._ddb.update_item(
                TableName=self._table,
                Key={"id": {"S": KEY_PREFIX + key_id}},
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeValues={k: {"N": str(v)} for k, v in values.items()},
                ReturnValues="ALL_NEW",  # moto's UPDATED_NEW was seen to omit tat
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except self._ddb.exceptions.ConditionalCheckFailedException as err:
            item: dict[str, Any] = err.response.get("Item", {})  # type: ignore[assignment]
            return False, int(item["tat"]["N"]) if "tat" in item else now_ms
        return True, int(response["Attributes"]["tat"]["N"])


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

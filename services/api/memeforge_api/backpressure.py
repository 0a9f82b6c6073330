"""Back-pressure at the door: ``POST /memes`` answers 503 ``overloaded`` while the pipeline's
backlog is past a threshold, so a burst is refused at once instead of waiting in the queues.

The backlog is the visible messages (``ApproximateNumberOfMessages``) of the request queue
and the render queue: a stopped consumer piles work up on the first, a stopped or slow
renderer on the second. Each api process reads it at most once per ``refresh_s`` (one
GetQueueAttributes per queue, in parallel; concurrent requests share one read), so the gate
costs no AWS call on the request path of almost every request. Precision: the reading is
up to ``refresh_s`` old, and SQS's count is itself approximate (eventually consistent).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final

from botocore.exceptions import BotoCoreError, ClientError

from memeforge_api.problems import Problem

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

log = logging.getLogger("memeforge.api")

DEPTH_ATTRIBUTE: Final = "ApproximateNumberOfMessages"


class QueueDepthGate:
    def __init__(
        self,
        sqs: SQSClient,
        queue_urls: Sequence[str],
        *,
        threshold: int,
        refresh_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sqs = sqs
        self._urls = tuple(queue_urls)
        self._threshold = threshold
        self._refresh_s = refresh_s
        self._clock = clock
        self._depth = 0
        self._read_at = -math.inf
        self._reading = asyncio.Lock()

    async def depth(self) -> int:
        """The backlog as last read, read again when older than ``refresh_s``."""
        if self._clock() - self._read_at < self._refresh_s:
            return self._depth
        async with self._reading:
            if self._clock() - self._read_at >= self._refresh_s:  # nobody read it meanwhile
                await self._read()
        return self._depth

    async def admit(self) -> None:
        """Raise 503 ``overloaded`` when the backlog is past the threshold."""
        depth = await self.depth()
        if depth > self._threshold:
            log.info("overloaded", extra={"backlog": depth, "threshold": self._threshold})
            raise Problem(
                503,
                "overloaded",
                "The pipeline is saturated",
                "too much work is waiting; retry later",
                headers={"Retry-After": str(max(1, math.ceil(self._refresh_s)))},
            )

    async def _read(self) -> None:
        try:
            counts = await asyncio.gather(*(self._count(url) for url in self._urls))
        except (BotoCoreError, ClientError) as err:
            # Keep the last reading: the gate guards against backlog, not outages (a
            # request that cannot be enqueued now is re-sent by the sweeper).
            log.warning("queue depth unreadable; keeping the last reading: %r", err)
        else:
            self._depth = sum(counts)
        self._read_at = self._clock()

    async def _count(self, url: str) -> int:
        response = await self._sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=[DEPTH_ATTRIBUTE]
        )
        return int(response.get("Attributes", {}).get(DEPTH_ATTRIBUTE, "0"))

"""How long a SendMessageBatch waits to carry more messages (issue #12: SQS calls per
meme).

SQS bills a batch of up to 10 messages as one request, so a call that waits a moment
for more saves calls, at the price of that moment's latency. A guess from the arrival
rate cannot tell a light load from a heavy one at this pipeline's rates (a full batch
would take longer to arrive than any budget worth paying), so the publisher waits only
for messages it knows are coming: those announced by ``Publisher.coming()`` (the
``POST /memes`` being handled), when at least ``MIN_GAIN`` of them are, until the batch
is full, never past the budget counted from the oldest waiting message. A busy api has
many POSTs in flight at once and fills its calls; a lightly loaded one rarely has two
besides the one publishing, and sends at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable

# Messages coming, besides those waiting, for a wait to be worth its latency.
MIN_GAIN = 2


class Gathering:
    """The wait before a call that carries up to ``target`` messages, within
    ``budget_s`` of the oldest (0: never waits)."""

    def __init__(self, budget_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.budget_s = budget_s
        self.now = clock

    def wait_s(self, have: int, target: int, oldest_at: float, coming: int) -> float:
        """Seconds to wait for more before a call that would carry ``have`` messages,
        the oldest of them waiting since ``oldest_at`` (``now()`` time), while
        ``coming`` more are on their way: what is left of the budget when at least
        ``MIN_GAIN`` are and the call is not full (the caller asks again as each comes),
        else 0."""
        if have >= target or coming < MIN_GAIN:
            return 0.0
        return max(0.0, self.budget_s - (self.now() - oldest_at))

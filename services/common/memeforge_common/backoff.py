"""The one backoff rule: every retry loop and poll interval in the project uses it."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Delay before the n-th try (1-based): base · factor^(n-1), capped at ``max_s``,
    with ±``jitter`` (a fraction) so that many clients do not retry in step."""

    base_s: float = 2.0
    max_s: float = 300.0
    factor: float = 2.0
    jitter: float = 0.2

    def delay(self, attempt: int) -> float:
        raw = min(self.max_s, self.base_s * self.factor ** max(0, attempt - 1))
        return raw * random.uniform(1 - self.jitter, 1 + self.jitter)


PARKED = Backoff(base_s=3600, max_s=43200)
"""Dead messages a drain cannot settle (they name nothing it knows) are looked at again
only this rarely."""

"""A least-recently-used map bounded by a byte budget: every engine cache is one.

Each entry is stored with its estimated size; putting one past the budget evicts the
oldest until the total fits again. An entry larger than the whole budget is not kept.

Reads take no lock (render() may run in threads as well as processes): under the GIL a
dict read is atomic, and an entry evicted by another thread meanwhile is still a valid
value to return. Writes and evictions take the lock so the byte count stays exact.
``peek`` reads without marking the entry as used, for hot loops that read an entry many
times per render (it was marked when the caller's own cached result was built).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class ByteLRU(Generic[K, V]):
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size_bytes = 0
        self.misses = 0
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: K) -> bool:
        return key in self._entries

    def get(self, key: K) -> V | None:
        found = self._entries.get(key)
        if found is None:
            self.misses += 1
            return None
        try:  # noqa: SIM105 (suppress() costs a context manager per hit, per glyph)
            self._entries.move_to_end(key)
        except KeyError:  # evicted by another thread meanwhile: still valid
            pass
        return found[0]

    def peek(self, key: K) -> V | None:
        found = self._entries.get(key)
        return None if found is None else found[0]

    def put(self, key: K, value: V, nbytes: int) -> None:
        with self._lock:
            self._forget(key)
            if nbytes > self.max_bytes:
                return
            self._entries[key] = (value, nbytes)
            self.size_bytes += nbytes
            self._evict()

    def resize(self, key: K, nbytes: int) -> None:
        """Account for an entry that grew or shrank in place (it counts as just used)."""
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                return
            self._entries[key] = (found[0], nbytes)
            self._entries.move_to_end(key)
            self.size_bytes += nbytes - found[1]
            self._evict()

    def set_budget(self, max_bytes: int) -> None:
        with self._lock:
            self.max_bytes = max_bytes
            self._evict()

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.size_bytes = 0

    def _forget(self, key: K) -> None:
        found = self._entries.pop(key, None)
        if found is not None:
            self.size_bytes -= found[1]

    def _evict(self) -> None:
        entries = self._entries
        while self.size_bytes > self.max_bytes and entries:
            _, (_, nbytes) = entries.popitem(last=False)
            self.size_bytes -= nbytes

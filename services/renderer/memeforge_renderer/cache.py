"""The renderer parent's byte-bounded LRU of template *bytes* keyed by (S3 key, ETag),
so a template is fetched from S3 once per process, not once per job. (Each pool
process has its own cache of *decoded* templates: engine/cache.py.)

The ETag is part of the key, so an updated template is never served stale: the new
ETag misses and the old entry ages out.
"""

from __future__ import annotations

from collections import OrderedDict


class TemplateBytesCache:
    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._entries: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def get(self, key: str, etag: str) -> bytes | None:
        data = self._entries.get((key, etag))
        if data is None:
            self.misses += 1
            return None
        self._entries.move_to_end((key, etag))
        self.hits += 1
        return data

    def put(self, key: str, etag: str, data: bytes) -> None:
        if len(data) > self._max_bytes:
            return  # larger than the whole cache: not worth evicting everything
        old = self._entries.pop((key, etag), None)
        if old is not None:
            self._bytes -= len(old)
        self._entries[(key, etag)] = data
        self._bytes += len(data)
        while self._bytes > self._max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= len(evicted)

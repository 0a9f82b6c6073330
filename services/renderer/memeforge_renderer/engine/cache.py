"""Decoded templates, per pool process (sized by engine.configure() from the pool
initializer): a byte-bounded LRU keyed by (S3 key, ETag, output size).

The ETag is part of the key, so an updated template is never served stale. Each entry
keeps the template decoded, upright, RGB and already scaled to the output size, plus
(lazily) its JPEG rows per quality, so a hit costs no decoding and no full re-encode.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

from memeforge_common.limits import DECODED_TEMPLATE_CACHE_BYTES
from PIL import Image

from .codec import JpegRows


@dataclass(eq=False)
class Template:
    image: Image.Image
    """Never drawn on: renders crop or copy it."""
    icc_profile: bytes | None
    source_format: str
    source_size: tuple[int, int]
    jpeg: dict[int, JpegRows | None] = field(default_factory=dict)
    """Quality -> the template's own JPEG cut into MCU rows (None: cannot splice)."""

    @property
    def nbytes(self) -> int:
        w, h = self.image.size
        return w * h * 3 + sum(r.nbytes for r in self.jpeg.values() if r is not None) + 1024


CacheKey = tuple[str, str, int]


class DecodedTemplateCache:
    def __init__(self, max_bytes: int = DECODED_TEMPLATE_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[CacheKey, Template] = OrderedDict()
        self._sizes: dict[CacheKey, int] = {}
        self.size_bytes = 0
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()  # render() may run in threads, not only processes

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: CacheKey) -> Template | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry

    def put(self, key: CacheKey, entry: Template) -> None:
        with self._lock:
            self._forget(key)
            size = entry.nbytes
            if size > self.max_bytes:
                return  # larger than the whole cache: not worth evicting everything
            self._entries[key] = entry
            self._sizes[key] = size
            self.size_bytes += size
            self._evict()

    def resized(self, key: CacheKey) -> None:
        """Account for an entry that grew (its JPEG rows were added)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return
            size = entry.nbytes
            self.size_bytes += size - self._sizes[key]
            self._sizes[key] = size
            self._evict(keep=key)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._sizes.clear()
            self.size_bytes = 0

    def _forget(self, key: CacheKey) -> None:
        if key in self._entries:
            del self._entries[key]
            self.size_bytes -= self._sizes.pop(key)

    def _evict(self, keep: CacheKey | None = None) -> None:
        while self.size_bytes > self.max_bytes and self._entries:
            oldest = next(iter(self._entries))
            if oldest == keep:
                if len(self._entries) == 1:
                    return
                self._entries.move_to_end(oldest)
                continue
            self._forget(oldest)


TEMPLATES = DecodedTemplateCache()


def content_key(data: bytes) -> str:
    """A cache key for template bytes that came without an S3 key and ETag."""
    return "sha:" + hashlib.blake2b(data, digest_size=16).hexdigest()

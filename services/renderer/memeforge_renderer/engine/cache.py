"""Decoded templates, per pool process (sized by engine.configure() from the pool
initializer): a byte-bounded LRU keyed by (S3 key, ETag, output size).

The ETag is part of the key, so an updated template is never served stale. Each entry
keeps the template decoded, upright, RGB and already scaled to the output size, plus
(lazily) its JPEG rows per quality, so a hit costs no decoding and no full re-encode.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from memeforge_common.limits import DECODED_TEMPLATE_CACHE_BYTES
from PIL import Image

from .codec import JpegRows
from .lru import ByteLRU


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
        self.lru: ByteLRU[CacheKey, Template] = ByteLRU(max_bytes)

    def __len__(self) -> int:
        return len(self.lru)

    @property
    def max_bytes(self) -> int:
        return self.lru.max_bytes

    @property
    def size_bytes(self) -> int:
        return self.lru.size_bytes

    def get(self, key: CacheKey) -> Template | None:
        return self.lru.get(key)

    def put(self, key: CacheKey, entry: Template) -> None:
        self.lru.put(key, entry, entry.nbytes)

    def resized(self, key: CacheKey) -> None:
        """Account for an entry that grew (its JPEG rows were added)."""
        entry = self.lru.peek(key)
        if entry is not None:
            self.lru.resize(key, entry.nbytes)

    def clear(self) -> None:
        self.lru.clear()


TEMPLATES = DecodedTemplateCache()


def content_key(data: bytes) -> str:
    """A cache key for template bytes that came without an S3 key and ETag."""
    return "sha:" + hashlib.blake2b(data, digest_size=16).hexdigest()

"""What a render returns (still or animated)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RenderOutput:
    data: bytes
    content_type: str
    width: int
    height: int
    report: dict[str, Any]
    """A LayoutReport as a dict (memeforge_common.models.LayoutReport validates it)."""
    thumbnail: bytes | None = None

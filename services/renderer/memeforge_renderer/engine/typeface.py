"""The caption font (Anton, OFL 1.1) and a bounded per-size cache of loaded faces."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from PIL import ImageFont

FONT_PATH = str(Path(__file__).resolve().with_name("fonts") / "Anton-Regular.ttf")

FONT_CACHE_SIZE = 256


@lru_cache(maxsize=FONT_CACHE_SIZE)
def load_font(path: str, size: int) -> ImageFont.FreeTypeFont:
    """The face at ``path`` at ``size`` px; loaded once per (path, size) and process."""
    return ImageFont.truetype(path, size)

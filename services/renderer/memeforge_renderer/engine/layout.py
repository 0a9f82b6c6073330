"""Place each caption: its box in pixels, its text normalised, its fitted lines."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from memeforge_common.models import TextBox

from .fit import EMPTY, FittedText, fit_text
from .typeface import FONT_PATH

MIN_FONT_SIZE = 10


@dataclass(frozen=True)
class Rect:
    x: int
    y: int
    width: int
    height: int


@dataclass(frozen=True)
class PlacedText:
    rect: Rect
    fitted: FittedText


def box_rect(box: TextBox, width: int, height: int) -> Rect:
    """The box in pixels, rounded and clipped to the image."""
    x0 = min(width, round(box.x * width))
    y0 = min(height, round(box.y * height))
    x1 = min(width, round((box.x + box.width) * width))
    y1 = min(height, round((box.y + box.height) * height))
    return Rect(x0, y0, max(0, x1 - x0), max(0, y1 - y0))


def caption_text(text: str) -> str:
    """Upper case, line breaks unified, other control characters turned into spaces."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = "".join(ch if ch == "\n" or unicodedata.category(ch) != "Cc" else " " for ch in text)
    return text.upper()


def place(box: TextBox, width: int, height: int) -> PlacedText:
    rect = box_rect(box, width, height)
    text = caption_text(box.text)
    if not text.strip():
        return PlacedText(rect, EMPTY)
    if rect.width == 0 or rect.height == 0:
        return PlacedText(rect, FittedText(size=0, lines=(), truncated=True, stroke=0))
    fitted = fit_text(
        text,
        FONT_PATH,
        rect.width,
        rect.height,
        max_size=rect.height,
        min_size=MIN_FONT_SIZE,
    )
    return PlacedText(rect, fitted)

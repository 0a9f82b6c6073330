"""Place each caption: its box in pixels, its text fitted, its style resolved.

Fitted layouts are cached (LRU) by everything that decides them, so a caption that comes
back on a template of the same size costs a dictionary look-up; drawing still happens.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from contextlib import suppress
from dataclasses import dataclass

from memeforge_common.models import TextBox

from .draw import Style, parse_colour
from .fit import EMPTY, FittedText, fit_caption
from .text import shaper, strong_rtl

FIT_CACHE_SIZE = 2048


@dataclass(frozen=True)
class Rect:
    x: int
    y: int
    width: int
    height: int

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.x, self.y, self.width, self.height)


@dataclass(frozen=True)
class PlacedText:
    rect: Rect
    fitted: FittedText
    style: Style
    base_rtl: bool
    space: float
    """The box font's space advance, in em."""


def box_rect(box: TextBox, width: int, height: int) -> Rect:
    """The box in pixels, rounded and clipped to the image."""
    x0 = min(width, round(box.x * width))
    y0 = min(height, round(box.y * height))
    x1 = min(width, round((box.x + box.width) * width))
    y1 = min(height, round((box.y + box.height) * height))
    return Rect(x0, y0, max(0, x1 - x0), max(0, y1 - y0))


_FITS: OrderedDict[tuple[object, ...], FittedText] = OrderedDict()


def _fit(box: TextBox, w: int, h: int) -> FittedText:
    key = (
        box.text,
        box.font,
        w,
        h,
        box.case,
        box.max_font_size,
        box.min_font_size,
        box.overflow,
        box.outline_width,
    )
    fitted = _FITS.get(key)
    if fitted is not None:
        with suppress(KeyError):  # evicted by another thread meanwhile
            _FITS.move_to_end(key)
        return fitted
    fitted = fit_caption(
        box.text,
        box.font,
        w,
        h,
        case=box.case,
        max_size=box.max_font_size,
        min_size=box.min_font_size,
        overflow=box.overflow,
        outline_em=box.outline_width,
    )
    _FITS[key] = fitted
    if len(_FITS) > FIT_CACHE_SIZE:
        with suppress(KeyError):
            _FITS.popitem(last=False)
    return fitted


def _rotated_extent(w: int, h: int, degrees: float) -> tuple[float, float]:
    a = math.radians(degrees)
    c, s = abs(math.cos(a)), abs(math.sin(a))
    return w * c + h * s, w * s + h * c


def place(box: TextBox, width: int, height: int) -> PlacedText:
    rect = box_rect(box, width, height)
    style = Style(
        fill=parse_colour(box.color),
        outline=parse_colour(box.outline_color),
        align=box.align,
        valign=box.valign,
        rotation=box.rotation,
    )
    space = shaper(box.font).space
    if not box.text.strip():
        return PlacedText(rect, EMPTY, style, False, space)
    w, h = rect.width, rect.height
    fitted = _fit(box, w, h)
    if box.rotation and fitted.lines:
        for _ in range(6):  # shrink the area until the turned block fits the box
            rw, rh = _rotated_extent(fitted.width, fitted.height, box.rotation)
            if rw <= rect.width and rh <= rect.height:
                break
            scale = min(rect.width / rw, rect.height / rh) * 0.98
            w, h = max(1, int(w * scale)), max(1, int(h * scale))
            fitted = _fit(box, w, h)
            if not fitted.lines:
                break
    return PlacedText(rect, fitted, style, bool(strong_rtl(box.text)), space)

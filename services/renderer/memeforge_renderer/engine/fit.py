"""Fit a caption into a box: greedy word wrap, binary search on the font size.

Pure and deterministic: text + font + box in pixels -> the size and the lines to draw.
Widths are measured with ``FreeTypeFont.getlength`` (shaped advance widths), heights
with the ink box of the first and last line, and the outline (stroke) is counted on
every side, so a fitted block never spills out of its box.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass

from PIL import ImageFont

from .typeface import load_font

ELLIPSIS = "\u2026"
LINE_SPACING = 1.1
"""Baseline-to-baseline distance, in em (Anton's capitals are 0.86 em tall)."""
MIN_GLYPH_EM = 0.1
"""No glyph of a word is assumed narrower than this: it bounds the prefix search."""


@dataclass(frozen=True)
class FittedText:
    size: int
    """Font size in px; 0 when there is nothing to draw."""
    lines: tuple[str, ...]
    truncated: bool
    stroke: int
    """Outline width in px."""
    line_height: int = 0
    """Baseline to baseline, in px."""
    top: int = 0
    """From the top of the block (outline included) to the first baseline."""
    height: int = 0
    """Height of the block, outline included."""


EMPTY = FittedText(size=0, lines=(), truncated=False, stroke=0)


class _TooNarrow(Exception):
    """A single character is wider than the box."""


def stroke_width(size: int) -> int:
    return max(1, round(size / 15))


def line_height(size: int) -> int:
    return max(1, round(size * LINE_SPACING))


def paragraphs_of(text: str) -> list[list[str]]:
    """Words per hard line; blank lines inside the text are kept, the ends are trimmed."""
    return [line.split() for line in text.strip().splitlines()]


def fit_text(
    text: str,
    font_path: str,
    box_w: int,
    box_h: int,
    *,
    max_size: int,
    min_size: int = 10,
) -> FittedText:
    """The largest size in [min_size, max_size] whose wrapped lines fit the box.

    Words longer than the box are broken between characters. When even ``min_size``
    does not fit, the lines that fit are kept and the last one ends with an ellipsis
    (``truncated=True``). A ``max_size`` below ``min_size`` wins (tiny boxes).
    """
    paragraphs = paragraphs_of(text)
    if not paragraphs:
        return EMPTY
    hi = max(1, max_size)
    lo = max(1, min(min_size, hi))
    best: FittedText | None = None
    while lo <= hi:
        mid = (lo + hi) // 2
        fitted = _try_size(paragraphs, font_path, mid, box_w, box_h)
        if fitted is None:
            hi = mid - 1
        else:
            best, lo = fitted, mid + 1
    if best is not None:
        return best
    return _truncate(paragraphs, font_path, max(1, min(min_size, max_size)), box_w, box_h)


def _try_size(
    paragraphs: list[list[str]], font_path: str, size: int, box_w: int, box_h: int
) -> FittedText | None:
    font = load_font(font_path, size)
    stroke = stroke_width(size)
    max_lines = _max_lines(font, size, stroke, box_h)
    avail = box_w - 2 * stroke
    if max_lines == 0 or avail <= 0:
        return None
    lines: list[str] = []
    try:
        for line in _wrap(paragraphs, font, avail):
            if len(lines) == max_lines:
                return None
            lines.append(line)
    except _TooNarrow:
        return None
    return _block(font, size, stroke, tuple(lines), truncated=False, box_h=box_h)


def _truncate(
    paragraphs: list[list[str]], font_path: str, size: int, box_w: int, box_h: int
) -> FittedText:
    font = load_font(font_path, size)
    stroke = stroke_width(size)
    nothing = FittedText(size=size, lines=(), truncated=True, stroke=stroke)
    max_lines = _max_lines(font, size, stroke, box_h)
    avail = box_w - 2 * stroke
    if max_lines == 0 or avail <= 0:
        return nothing
    lines: list[str] = []
    try:
        for line in _wrap(paragraphs, font, avail):
            lines.append(line)
            if len(lines) == max_lines:
                break
    except _TooNarrow:
        return nothing
    while lines:
        lines[-1] = _with_ellipsis(lines[-1], font, avail)
        fitted = _block(font, size, stroke, tuple(lines), truncated=True, box_h=box_h)
        if fitted is not None:
            return fitted
        lines.pop()  # accents on the last line made the block too tall
    return nothing


def _max_lines(font: ImageFont.FreeTypeFont, size: int, stroke: int, box_h: int) -> int:
    """An upper bound on the lines that fit: capital height plus one advance per line."""
    cap = math.ceil(-font.getbbox("H", anchor="ls")[1])
    room = box_h - 2 * stroke - cap
    return 0 if room < 0 else 1 + room // line_height(size)


def _block(
    font: ImageFont.FreeTypeFont,
    size: int,
    stroke: int,
    lines: tuple[str, ...],
    *,
    truncated: bool,
    box_h: int,
) -> FittedText | None:
    """The block's exact ink height (first line's top, last line's bottom), or None."""
    lh = line_height(size)
    ascent = max(0, math.ceil(-font.getbbox(lines[0], anchor="ls")[1]))
    descent = max(0, math.ceil(font.getbbox(lines[-1], anchor="ls")[3]))
    height = 2 * stroke + ascent + (len(lines) - 1) * lh + descent
    if height > box_h:
        return None
    return FittedText(
        size=size,
        lines=lines,
        truncated=truncated,
        stroke=stroke,
        line_height=lh,
        top=stroke + ascent,
        height=height,
    )


def _wrap(paragraphs: list[list[str]], font: ImageFont.FreeTypeFont, avail: int) -> Iterator[str]:
    """Greedy wrap, lazily: the caller stops as soon as it has seen enough lines."""
    for paragraph in paragraphs:
        if paragraph:
            yield from _wrap_paragraph(list(paragraph), font, avail)
        else:
            yield ""


def _wrap_paragraph(words: list[str], font: ImageFont.FreeTypeFont, avail: int) -> Iterator[str]:
    """Each line is guessed from its words' own widths, then settled by measuring the
    joined line itself (so kerning and shaping count): a few measurements per line."""
    most = _most_chars(font, avail)
    space = font.getlength(" ")
    widths: dict[str, float] = {}

    def width(j: int) -> float:
        word = words[j]
        if word not in widths:
            widths[word] = font.getlength(word) if len(word) <= most else math.inf
        return widths[word]

    i = 0
    while i < len(words):
        if width(i) > avail:  # a word wider than the box: break it between characters
            word = words[i]
            cut = _longest_prefix(word, font, avail, most)
            while cut < len(word):
                yield word[:cut]
                word = word[cut:]
                cut = _longest_prefix(word, font, avail, most)
            words[i] = word  # the rest starts the next line
            continue
        k, total = 1, width(i)
        while i + k < len(words) and total + space + width(i + k) <= avail:
            total += space + width(i + k)
            k += 1
        while k > 1 and font.getlength(" ".join(words[i : i + k])) > avail:
            k -= 1
        while i + k < len(words) and font.getlength(" ".join(words[i : i + k + 1])) <= avail:
            k += 1
        yield " ".join(words[i : i + k])
        i += k


def _most_chars(font: ImageFont.FreeTypeFont, avail: int) -> int:
    """More characters than this cannot fit (so long words are never measured whole).

    Holds for every glyph with an advance of at least MIN_GLYPH_EM (Anton's narrowest is
    0.146 em); runs of zero-width marks are merely broken a little early.
    """
    return int(avail / (MIN_GLYPH_EM * font.size)) + 1


def _longest_prefix(word: str, font: ImageFont.FreeTypeFont, avail: int, most: int) -> int:
    """How many leading characters of ``word`` fit in ``avail``: binary search, >= 1."""
    if len(word) <= most and font.getlength(word) <= avail:
        return len(word)
    if font.getlength(word[:1]) > avail:
        raise _TooNarrow(word[:1])
    lo, hi = 1, min(len(word) - 1, most)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if font.getlength(word[:mid]) <= avail:
            lo = mid
        else:
            hi = mid - 1
    while lo > 1 and unicodedata.combining(word[lo]):
        lo -= 1  # keep a combining mark with its base
    return lo


def _with_ellipsis(line: str, font: ImageFont.FreeTypeFont, avail: int) -> str:
    """``line`` shortened until it fits with a trailing ellipsis."""
    text = line.rstrip()
    while text and font.getlength(text + ELLIPSIS) > avail:
        text = text[:-1].rstrip()
    return text + ELLIPSIS if font.getlength(text + ELLIPSIS) <= avail else ""

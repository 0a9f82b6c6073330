"""Fit a caption into a box: wrap and size it under one of three overflow policies.

Pure and deterministic: text + box in px -> the size and the lines to draw. All widths
come from per-face metrics measured once in em (see typeface.py), so trying a size is
arithmetic. A fitted block never leaves its box: every line's ink (outline included,
plus a 1 px rounding margin) is within the width, the block's ink within the height.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from memeforge_common.limits import FIT_CACHE_BYTES

from ._blend import largest_fit
from .lru import ByteLRU
from .text import ZWJ, Metrics, Shaper, Token, is_attached, normalise, shaper

LINE_SPACING = 1.1
"""Baseline-to-baseline distance, in em."""
DEFAULT_OUTLINE_EM = 1 / 15
SAFETY = 1
"""px kept free on every side for rounding glyph positions to whole pixels."""
MIN_GLYPH_EM = 0.1
"""No glyph is assumed narrower than this: it bounds how much of a long word is measured."""
OVERFLOW_POLICIES = ("wrap_shrink", "shrink_wrap", "ellipsis")
EXACT_SIZES_UP_TO = 32
"""Every px size up to this is a candidate; above it sizes go in ~4 % steps (LADDER)."""
LADDER_STEP = 1.04


def _ladder_above() -> tuple[int, ...]:
    sizes = [EXACT_SIZES_UP_TO]
    while sizes[-1] < 4000:
        sizes.append(max(sizes[-1] + 1, int(sizes[-1] * LADDER_STEP)))
    return tuple(sizes[1:])


LADDER = _ladder_above()
"""Sizes tried above EXACT_SIZES_UP_TO: a caption never needs 97 px when 96 px is there
(4 % is invisible), and fewer distinct sizes means far more glyph-cache hits."""


FIT_ENTRY_BYTES = 250
"""Estimated memory of one cached geometry or size list (plus SIZE_BYTES per size), its
key and LRU node, measured with tracemalloc."""
SIZE_BYTES = 30

SIZES: ByteLRU[tuple[int, int], tuple[int, ...]] = ByteLRU(FIT_CACHE_BYTES)
"""Candidate sizes by (lo, hi); with GEOMETRY, the fitter's caches (one budget each)."""


def candidate_sizes(lo: int, hi: int) -> tuple[int, ...]:
    """The sizes the fitter may pick in [lo, hi], ascending; both ends always included."""
    found = SIZES.get((lo, hi))
    if found is None:
        exact = range(lo, min(hi, EXACT_SIZES_UP_TO) + 1)
        above = [s for s in LADDER if lo <= s < hi]
        found = tuple(sorted({*exact, *above, lo, hi}))
        SIZES.put((lo, hi), found, FIT_ENTRY_BYTES + SIZE_BYTES * len(found))
    return found


@dataclass(frozen=True, slots=True)
class Line:
    tokens: tuple[Token, ...]
    text: str
    advance: float
    """em, spaces included."""
    over_left: float
    over_right: float
    top: float
    bottom: float


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
    """From the top of the block (margin and outline included) to the first baseline."""
    height: int = 0
    """Height of the block, margin and outline included."""
    width: int = 0
    """Width of the widest line's ink, margin and outline included."""
    layout: tuple[Line, ...] = ()
    missing: int = 0
    """Characters that no bundled font has (drawn as .notdef boxes)."""


EMPTY = FittedText(size=0, lines=(), truncated=False, stroke=0)


class _TooNarrow(Exception):
    """A single character is wider than the box."""


def stroke_width(size: int, outline_em: float | None = None) -> int:
    em = DEFAULT_OUTLINE_EM if outline_em is None else outline_em
    return 0 if em <= 0 else max(1, round(size * em))


def line_height(size: int) -> int:
    return max(1, round(size * LINE_SPACING))


class _Geometry:
    """Everything about one candidate size that does not depend on the text."""

    __slots__ = ("avail", "box_h", "box_w", "lh", "max_lines", "pad", "size", "stroke")

    def __init__(self, size: int, box_w: int, box_h: int, outline_em: float | None) -> None:
        self.size = size
        self.stroke = stroke_width(size, outline_em)
        self.pad = self.stroke + SAFETY
        self.box_w = box_w
        self.box_h = box_h
        self.avail = (box_w - 2 * self.pad) / size  # em
        self.lh = line_height(size)
        room = box_h - 2 * self.pad
        self.max_lines = 0 if room <= 0 else 1 + room // self.lh

    def line_fits(self, advance: float, over_left: float, over_right: float) -> bool:
        return (
            math.ceil((advance + over_left + over_right) * self.size) <= self.box_w - 2 * self.pad
        )

    def block(self, lines: list[Line], *, truncated: bool, missing: int) -> FittedText | None:
        """The block's exact ink height (first line's top, last line's bottom), or None."""
        s = self.size
        ascent = max(0, math.ceil(-lines[0].top * s))
        descent = max(0, math.ceil(lines[-1].bottom * s))
        height = 2 * self.pad + ascent + (len(lines) - 1) * self.lh + descent
        if height > self.box_h:
            return None
        widest = max(math.ceil((ln.advance + ln.over_left + ln.over_right) * s) for ln in lines)
        return FittedText(
            size=s,
            lines=tuple(ln.text for ln in lines),
            truncated=truncated,
            stroke=self.stroke,
            line_height=self.lh,
            top=self.pad + ascent,
            height=height,
            width=widest + 2 * self.pad,
            layout=tuple(lines),
            missing=missing,
        )


GEOMETRY: ByteLRU[tuple[int, int, int, float | None], _Geometry] = ByteLRU(FIT_CACHE_BYTES)


def _geometry(size: int, box_w: int, box_h: int, outline_em: float | None) -> _Geometry:
    key = (size, box_w, box_h, outline_em)
    geo = GEOMETRY.get(key)
    if geo is None:
        geo = _Geometry(size, box_w, box_h, outline_em)
        GEOMETRY.put(key, geo, FIT_ENTRY_BYTES)
    return geo


def paragraphs_of(text: str) -> list[str]:
    """Hard lines; blank lines inside the text are kept, the ends are trimmed."""
    return text.strip().splitlines()


def fit_text(
    text: str,
    font: str,
    box_w: int,
    box_h: int,
    *,
    max_size: int,
    min_size: int = 10,
    overflow: str = "wrap_shrink",
    outline_em: float | None = None,
) -> FittedText:
    """The largest size in [min_size, max_size] at which the text fits, per ``overflow``.

    Text is taken as it is (see ``text.normalise`` for case and control characters).
    Words longer than the box are broken between characters. When even ``min_size``
    does not fit, the lines that fit are kept and the last one ends with an ellipsis
    (``truncated=True``). A ``max_size`` below ``min_size`` wins (tiny boxes).
    """
    if overflow not in OVERFLOW_POLICIES:
        raise ValueError(f"unknown overflow policy {overflow!r}")
    sh = shaper(font)
    paragraphs = [sh.tokens(p) for p in paragraphs_of(text)]
    if not paragraphs:
        return EMPTY
    missing = sum(tok.metrics.missing for p in paragraphs for tok in p)
    hi = max(1, max_size)
    lo = max(1, min(min_size, hi))
    if box_w <= 0 or box_h <= 0:
        return FittedText(size=lo, lines=(), truncated=True, stroke=stroke_width(lo, outline_em))

    def attempt(size: int) -> FittedText | None:
        return _try_size(sh, paragraphs, _geometry(size, box_w, box_h, outline_em), missing)

    def exact(size: int) -> bool:  # a word wider than the line: break it, then decide
        return attempt(size) is not None

    em = DEFAULT_OUTLINE_EM if outline_em is None else outline_em

    def largest(sizes: tuple[int, ...]) -> int | None:
        """The largest of ``sizes`` that fits (binary search: fitting is monotone in
        practice), in C: the same arithmetic as _try_size, without building lines."""
        return largest_fit(
            sizes, paragraphs, sh.space, box_w, box_h, em, LINE_SPACING, SAFETY, exact
        )

    if overflow == "ellipsis":
        size = hi
        while size > lo and _geometry(size, box_w, box_h, outline_em).max_lines < 1:
            size -= 1
        return attempt(size) or _truncate(
            sh, paragraphs, _geometry(size, box_w, box_h, outline_em), missing
        )
    if overflow == "shrink_wrap":
        single = _single_lines(sh, paragraphs, lo, hi, box_w, box_h, outline_em, missing)
        if single is not None:
            return single
    sizes = candidate_sizes(lo, hi)
    top = bisect_right(sizes, _upper_estimate(sh, paragraphs, box_w, box_h, hi))
    chosen = largest(sizes[: max(1, top)])
    if chosen is None and top > 1:
        chosen = largest((lo,))
    best = attempt(chosen) if chosen is not None else None
    if best is not None:
        return best
    return _truncate(sh, paragraphs, _geometry(lo, box_w, box_h, outline_em), missing)


def _upper_estimate(
    sh: Shaper, paragraphs: list[list[Token]], box_w: int, box_h: int, hi: int
) -> int:
    """No size above this can fit: the text's area (advance x line height) exceeds the box's."""
    total = sum(tok.metrics.advance for p in paragraphs for tok in p)
    total += sh.space * sum(max(0, len(p) - 1) for p in paragraphs)
    if total <= 0:
        return hi
    # k lines of advance box_w hold at most k * box_w / s em; k <= (box_h / s + 0.3) / 1.1
    # solve total <= box_w / s * (box_h / s + 0.3) / 1.1 for s, with generous slack.
    bound = math.sqrt(box_w * box_h / (LINE_SPACING * total)) * 1.25 + 2
    bound = max(bound, box_w * 0.3 / (LINE_SPACING * total) + 2)
    return max(1, min(hi, int(bound)))


def _single_lines(
    sh: Shaper,
    paragraphs: list[list[Token]],
    lo: int,
    hi: int,
    box_w: int,
    box_h: int,
    outline_em: float | None,
    missing: int,
) -> FittedText | None:
    """shrink_wrap's first stage: each paragraph on one line, as large as fits."""
    lines = [_make_line(sh, list(p)) for p in paragraphs]
    widest = max((ln.advance + ln.over_left + ln.over_right) for ln in lines)
    em = DEFAULT_OUTLINE_EM if outline_em is None else outline_em
    guess = hi if widest <= 0 else int((box_w - 2 * SAFETY) / (widest + 2 * em)) + 1
    sizes = candidate_sizes(lo, hi)
    for size in reversed(sizes[: bisect_right(sizes, guess)]):
        geo = _geometry(size, box_w, box_h, outline_em)
        if len(lines) <= geo.max_lines and all(
            geo.line_fits(ln.advance, ln.over_left, ln.over_right) for ln in lines
        ):
            fitted = geo.block(lines, truncated=False, missing=missing)
            if fitted is not None:
                return fitted
    return None


def _make_line(sh: Shaper, tokens: list[Token]) -> Line:
    advance = 0.0
    over_left = over_right = top = bottom = 0.0
    parts: list[str] = []
    for i, tok in enumerate(tokens):
        m = tok.metrics
        if i and tok.space_before:
            advance += sh.space
            parts.append(" ")
        advance += m.advance
        parts.append(m.text)
        over_left = max(over_left, m.over_left)
        over_right = max(over_right, m.over_right)
        top = min(top, m.top)
        bottom = max(bottom, m.bottom)
    return Line(tuple(tokens), "".join(parts), advance, over_left, over_right, top, bottom)


def _try_size(
    sh: Shaper, paragraphs: list[list[Token]], geo: _Geometry, missing: int
) -> FittedText | None:
    if geo.max_lines == 0 or geo.avail <= 0:
        return None
    lines: list[Line] = []
    try:
        for line in _wrap(sh, paragraphs, geo):
            if len(lines) == geo.max_lines:
                return None
            lines.append(line)
    except _TooNarrow:
        return None
    return geo.block(lines, truncated=False, missing=missing)


def _truncate(
    sh: Shaper, paragraphs: list[list[Token]], geo: _Geometry, missing: int
) -> FittedText:
    nothing = FittedText(size=geo.size, lines=(), truncated=True, stroke=geo.stroke)
    if geo.max_lines == 0 or geo.avail <= 0:
        return nothing
    lines: list[Line] = []
    overflowed = False
    try:
        for line in _wrap(sh, paragraphs, geo):
            if len(lines) == geo.max_lines:
                overflowed = True
                break
            lines.append(line)
    except _TooNarrow:
        overflowed = True
    if not overflowed:  # everything fitted after all (the block height decides below)
        fitted = geo.block(lines, truncated=False, missing=missing) if lines else None
        if fitted is not None:
            return fitted
    while lines:
        lines[-1] = _with_ellipsis(sh, lines[-1], geo)
        fitted = geo.block(lines, truncated=True, missing=missing)
        if fitted is not None and lines[-1].tokens:
            return fitted
        lines.pop()  # accents on the last line made the block too tall
    return nothing


def _with_ellipsis(sh: Shaper, line: Line, geo: _Geometry) -> Line:
    """``line`` shortened until it fits with a trailing ellipsis (no tokens if nothing does)."""
    dots = sh.measure(sh.ellipsis())
    tokens = list(line.tokens)
    while tokens:
        candidate = _make_line(sh, [*tokens, Token(dots, False)])
        if geo.line_fits(candidate.advance, candidate.over_left, candidate.over_right):
            return candidate
        last = tokens.pop()
        text = last.metrics.text
        cut = _cut_back(text, len(text) - 1)
        if cut > 0:
            tokens.append(Token(_measure_piece(sh, text[:cut]), last.space_before))
    alone = _make_line(sh, [Token(dots, False)])
    if geo.line_fits(alone.advance, alone.over_left, alone.over_right):
        return alone
    return Line((), "", 0.0, 0.0, 0.0, 0.0, 0.0)


def _measure_piece(sh: Shaper, text: str) -> Metrics:
    """Metrics of a piece of a word, without filling the word cache with prefixes."""
    return sh._measure(text)


def _cut_back(text: str, cut: int) -> int:
    """Move a cut left so that it does not split a character from its marks/joiners."""
    while 0 < cut < len(text) and (is_attached(text[cut]) or text[cut - 1] == ZWJ):
        cut -= 1
    return cut


def _wrap(sh: Shaper, paragraphs: list[list[Token]], geo: _Geometry) -> Iterator[Line]:
    """Greedy wrap, lazily: the caller stops as soon as it has seen enough lines."""
    for paragraph in paragraphs:
        if paragraph:
            yield from _wrap_paragraph(sh, list(paragraph), geo)
        else:
            yield Line((), "", 0.0, 0.0, 0.0, 0.0, 0.0)


def _wrap_paragraph(sh: Shaper, tokens: list[Token], geo: _Geometry) -> Iterator[Line]:
    size = geo.size
    limit = geo.box_w - 2 * geo.pad
    space = sh.space
    i = 0
    n = len(tokens)
    while i < n:
        first = tokens[i].metrics
        if not geo.line_fits(first.advance, first.over_left, first.over_right):
            head, tokens[i] = _split_token(sh, tokens[i], geo)  # the rest starts a line
            yield _make_line(sh, [head])
            continue
        advance = first.advance
        ol, orr = first.over_left, first.over_right
        j = i + 1
        while j < n:
            m = tokens[j].metrics
            extra = m.advance + (space if tokens[j].space_before else 0.0)
            nol = max(ol, m.over_left)
            nor = max(orr, m.over_right)
            if math.ceil((advance + extra + nol + nor) * size) > limit:
                break
            advance += extra
            ol, orr = nol, nor
            j += 1
        if j < n and tokens[j].cont:  # a chunked word goes on: fill the line with a piece
            piece, remainder = _fill(sh, tokens[i:j], tokens[j], geo)
            if piece is not None and remainder is not None:
                yield _make_line(sh, [*tokens[i:j], piece])
                tokens[j] = remainder
                i = j
                continue
        yield _make_line(sh, tokens[i:j])
        i = j


def _fill(
    sh: Shaper, line: list[Token], token: Token, geo: _Geometry
) -> tuple[Token | None, Token | None]:
    """The longest piece of ``token`` that still fits after ``line``, and the rest."""
    text = token.metrics.text

    def piece(n: int) -> Token:
        return Token(_measure_piece(sh, text[:n]), token.space_before, cont=token.cont)

    def fits(n: int) -> bool:
        ln = _make_line(sh, [*line, piece(n)])
        return geo.line_fits(ln.advance, ln.over_left, ln.over_right)

    cut = _cut_back(text, _largest(fits, 0, min(len(text) - 1, int(geo.avail / MIN_GLYPH_EM) + 1)))
    if cut <= 0:
        return None, None
    return piece(cut), Token(_measure_piece(sh, text[cut:]), False, cont=True)


def _largest(fits: Callable[[int], bool], lo: int, hi: int) -> int:
    """The largest n in [lo, hi] with fits(n), for a fits that is monotone (lo assumed)."""
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def _split_token(sh: Shaper, token: Token, geo: _Geometry) -> tuple[Token, Token]:
    """A token wider than the line, cut between characters: the part that fits, the rest."""
    text = token.metrics.text
    most = int(geo.avail / MIN_GLYPH_EM) + 1
    cut = _longest_prefix(sh, text, geo, most)
    head = Token(_measure_piece(sh, text[:cut]), token.space_before)
    return head, Token(_measure_piece(sh, text[cut:]), False, cont=True)


def _longest_prefix(sh: Shaper, text: str, geo: _Geometry, most: int) -> int:
    """How many leading characters fit on one line: binary search, >= 1 or _TooNarrow."""

    def fits(n: int) -> bool:
        m = _measure_piece(sh, text[:n])
        return geo.line_fits(m.advance, m.over_left, m.over_right)

    if len(text) <= most and fits(len(text)):
        return len(text)
    one = max(1, _cut_forward(text, 1))
    if not fits(one):
        raise _TooNarrow(text[:one])
    return max(one, _cut_back(text, _largest(fits, one, min(len(text) - 1, most))))


def _cut_forward(text: str, cut: int) -> int:
    while cut < len(text) and (is_attached(text[cut]) or text[cut - 1] == ZWJ):
        cut += 1
    return cut


def fit_caption(
    text: str,
    font: str,
    box_w: int,
    box_h: int,
    *,
    case: str = "upper",
    max_size: int | None = None,
    min_size: int = 10,
    overflow: str = "wrap_shrink",
    outline_em: float | None = None,
) -> FittedText:
    """``fit_text`` on the caption as a user typed it (case and control characters)."""
    return fit_text(
        normalise(text, case),
        font,
        box_w,
        box_h,
        max_size=box_h if max_size is None else max_size,
        min_size=min_size,
        overflow=overflow,
        outline_em=outline_em,
    )

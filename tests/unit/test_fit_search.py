"""The fitter's C inner loop (engine/_blend.c largest_fit) against the Python it
replaced: the same size for random captions and boxes, and typed errors for bad input."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import pytest
from memeforge_renderer.engine import _blend
from memeforge_renderer.engine.fit import (
    DEFAULT_OUTLINE_EM,
    LINE_SPACING,
    SAFETY,
    _Geometry,
    _try_size,
    candidate_sizes,
    fit_text,
)
from memeforge_renderer.engine.text import Shaper, Token, shaper

pytestmark = pytest.mark.unit

PHRASES = (
    "A I WE ONE DOES NOT SIMPLY WALK INTO MORDOR WHEN YOU FINALLY FIX THE BUG",
    "INTERNATIONALISATION SUPERCALIFRAGILISTICEXPIALIDOCIOUS ÉTÉ ÇA ÑANDÚ",
    "猫 我们 😀 👍🏽 שלום مرحبا Ǻ̈ W.W.W 100% ...",
)
WORDS = [word for phrase in PHRASES for word in phrase.split()]


def quick_fits(sh: Shaper, paragraphs: list[list[Token]], geo: _Geometry) -> bool | None:
    """The Python this replaced (fit.py before the C loop): does the text fit at this
    size? None when a word is wider than a line."""
    if geo.max_lines == 0 or geo.avail <= 0:
        return False
    size, limit, lines = geo.size, geo.box_w - 2 * geo.pad, 0
    first_top = last_bottom = 0.0
    for paragraph in paragraphs:
        n = len(paragraph)
        if n == 0:
            lines += 1
            if lines > geo.max_lines:
                return False
            if lines == 1:
                first_top = 0.0
            last_bottom = 0.0
            continue
        i = 0
        while i < n:
            m = paragraph[i].metrics
            advance, ol, orr = m.advance, m.over_left, m.over_right
            if math.ceil((advance + ol + orr) * size) > limit:
                return None
            top, bottom = m.top, m.bottom
            j = i + 1
            while j < n:
                tok = paragraph[j]
                m = tok.metrics
                extra = m.advance + (sh.space if tok.space_before else 0.0)
                nol = ol if ol > m.over_left else m.over_left
                nor = orr if orr > m.over_right else m.over_right
                if math.ceil((advance + extra + nol + nor) * size) > limit:
                    break
                advance += extra
                ol, orr = nol, nor
                top, bottom = min(top, m.top), max(bottom, m.bottom)
                j += 1
            lines += 1
            if lines > geo.max_lines:
                return False
            if lines == 1:
                first_top = top
            last_bottom = bottom
            i = j
    ascent = max(0, math.ceil(-first_top * size))
    descent = max(0, math.ceil(last_bottom * size))
    return 2 * geo.pad + ascent + (lines - 1) * geo.lh + descent <= geo.box_h


def search(fits: Callable[[int], bool], sizes: tuple[int, ...]) -> int | None:
    best: int | None = None
    lo, hi = 0, len(sizes) - 1
    while lo <= hi:
        mid = (lo + hi) // 2
        if fits(sizes[mid]):
            best, lo = sizes[mid], mid + 1
        else:
            hi = mid - 1
    return best


def random_text(rng: random.Random) -> str:
    lines = []
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        lines.append(" ".join(rng.choices(WORDS, k=rng.randint(0, 9))))
    return "\n".join(lines)


def one_random_case(rng: random.Random) -> None:
    sh = shaper(rng.choice(("anton", "noto-sans")))
    text = random_text(rng)
    paragraphs = [sh.tokens(p) for p in text.strip().splitlines()]
    box_w, box_h = rng.randint(1, 900), rng.randint(1, 400)
    outline = rng.choice((None, 0.0, 0.03, 0.1, 0.25))
    em = DEFAULT_OUTLINE_EM if outline is None else outline
    sizes = candidate_sizes(rng.randint(1, 12), rng.randint(12, 300))
    calls: list[int] = []

    def exact(size: int) -> bool:
        calls.append(size)
        return _try_size(sh, paragraphs, _Geometry(size, box_w, box_h, outline), 0) is not None

    def fits(size: int) -> bool:
        quick = quick_fits(sh, paragraphs, _Geometry(size, box_w, box_h, outline))
        return exact(size) if quick is None else quick

    expected = search(fits, sizes)
    python_calls, calls[:] = list(calls), []
    got = _blend.largest_fit(
        sizes, paragraphs, sh.space, box_w, box_h, em, LINE_SPACING, SAFETY, exact
    )
    assert got == expected, (text, box_w, box_h, outline)
    assert calls == python_calls  # the exact path for the same sizes, no more


@pytest.mark.parametrize("seed", range(8))
def test_largest_fit_picks_the_size_the_python_search_picks(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(150):
        one_random_case(rng)


def test_largest_fit_of_no_sizes_or_no_room_is_none() -> None:
    sh = shaper("anton")
    paragraphs = [sh.tokens("HELLO WORLD")]
    args = (sh.space, 400, 100, 0.1, LINE_SPACING, SAFETY, lambda size: True)
    assert _blend.largest_fit((), paragraphs, *args) is None
    assert _blend.largest_fit((10, 20), paragraphs, sh.space, 2, 2, 0.1, 1.1, 1, bool) is None
    assert _blend.largest_fit((10, 20), [], *args) == 20  # nothing to place fits any size


def test_largest_fit_gives_typed_errors_for_bad_input() -> None:
    sh = shaper("anton")
    good = [sh.tokens("HELLO WORLD")]
    rest = (sh.space, 400, 100, 0.1, LINE_SPACING, SAFETY)
    with pytest.raises(TypeError, match="callable"):
        _blend.largest_fit((10,), good, *rest, None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="positive"):
        _blend.largest_fit((0, 10), good, *rest, bool)
    with pytest.raises(AttributeError, match=r"metrics|space_before"):
        _blend.largest_fit((10,), [[object()]], *rest, bool)  # type: ignore[list-item]
    with pytest.raises(TypeError):
        _blend.largest_fit((10,), 5, *rest, bool)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="line_spacing"):
        _blend.largest_fit((10,), good, sh.space, 400, 100, 0.1, 0.0, SAFETY, bool)
    with pytest.raises(ValueError, match="outline_em"):
        _blend.largest_fit((10,), good, sh.space, 400, 100, math.nan, 1.1, SAFETY, bool)

    def broken(size: int) -> bool:
        raise RuntimeError("exact failed")

    long_word = [sh.tokens("SUPERCALIFRAGILISTICEXPIALIDOCIOUS")]
    with pytest.raises(RuntimeError, match="exact failed"):
        _blend.largest_fit((200,), long_word, *rest, broken)


def test_fit_text_still_breaks_a_word_wider_than_the_box() -> None:
    fitted = fit_text("SUPERCALIFRAGILISTICEXPIALIDOCIOUS", "anton", 120, 300, max_size=200)
    assert len(fitted.lines) > 1
    assert not fitted.truncated

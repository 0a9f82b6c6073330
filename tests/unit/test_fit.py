"""fit_text: wrapping, shrinking, breaking long words, truncating."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from memeforge_renderer.engine.fit import ELLIPSIS, FittedText, fit_text, stroke_width
from memeforge_renderer.engine.typeface import FONT_PATH, load_font

pytestmark = pytest.mark.unit

LONG = (
    "WHEN YOU FINALLY FIX THE BUG AT FOUR IN THE MORNING AND THEN REALISE THAT "
    "THE TEST WAS WRONG ALL ALONG AND THE CODE WAS FINE"
)


def _ink(text: str) -> str:
    return re.sub(r"\s+", "", text)


def assert_fits(fitted: FittedText, box_w: int, box_h: int) -> None:
    font = load_font(FONT_PATH, fitted.size)
    for line in fitted.lines:
        assert font.getlength(line) + 2 * fitted.stroke <= box_w, line
    assert fitted.height <= box_h
    if fitted.lines:
        assert fitted.stroke == stroke_width(fitted.size) >= 1
        assert fitted.line_height > 0
        assert 0 < fitted.top <= fitted.height


def test_long_text_wraps_and_every_line_fits() -> None:
    fitted = fit_text(LONG, FONT_PATH, 600, 200, max_size=200)
    assert len(fitted.lines) >= 3
    assert not fitted.truncated
    assert_fits(fitted, 600, 200)
    assert _ink("".join(fitted.lines)) == _ink(LONG)


def test_short_text_is_bigger_than_long_text() -> None:
    short = fit_text("HELLO", FONT_PATH, 600, 200, max_size=200)
    long = fit_text(LONG, FONT_PATH, 600, 200, max_size=200)
    assert short.size > long.size
    assert short.lines == ("HELLO",)


def test_size_stays_within_bounds() -> None:
    big = fit_text("A", FONT_PATH, 2000, 90, max_size=90, min_size=10)
    assert 10 <= big.size <= 90
    assert big.size >= 60  # a single letter in a wide box is limited only by the height
    small = fit_text(LONG, FONT_PATH, 300, 60, max_size=60, min_size=12)
    assert 12 <= small.size <= 60


def test_unbreakable_word_is_broken_and_fits() -> None:
    word = "ABCDEFGHIJ" * 20
    fitted = fit_text(word, FONT_PATH, 400, 300, max_size=300)
    assert not fitted.truncated
    assert len(fitted.lines) > 1
    assert "".join(fitted.lines) == word
    assert_fits(fitted, 400, 300)


def test_overflow_at_min_size_truncates_with_ellipsis() -> None:
    text = " ".join(["OVERFLOW"] * 400)
    fitted = fit_text(text, FONT_PATH, 200, 40, max_size=40, min_size=10)
    assert fitted.truncated
    assert fitted.size == 10
    assert fitted.lines
    assert fitted.lines[-1].endswith(ELLIPSIS)
    assert_fits(fitted, 200, 40)


def test_hard_line_breaks_are_kept() -> None:
    fitted = fit_text("TOP LINE\nBOTTOM", FONT_PATH, 1000, 300, max_size=300)
    assert fitted.lines == ("TOP LINE", "BOTTOM")


def test_blank_text_draws_nothing() -> None:
    fitted = fit_text(" \n\t ", FONT_PATH, 500, 100, max_size=100)
    assert fitted.lines == ()
    assert not fitted.truncated


def test_box_narrower_than_a_letter_draws_nothing() -> None:
    fitted = fit_text("WIDE", FONT_PATH, 3, 100, max_size=100)
    assert fitted.lines == ()
    assert fitted.truncated


_WORD = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!?,.'ÉÄÇẦ", min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(
    words=st.lists(_WORD, min_size=1, max_size=40),
    box_w=st.integers(min_value=20, max_value=900),
    box_h=st.integers(min_value=12, max_value=300),
    min_size=st.integers(min_value=6, max_value=14),
)
def test_fit_invariants(words: list[str], box_w: int, box_h: int, min_size: int) -> None:
    text = " ".join(words)
    fitted = fit_text(text, FONT_PATH, box_w, box_h, max_size=box_h, min_size=min_size)
    assert min(min_size, box_h) <= fitted.size <= box_h
    assert_fits(fitted, box_w, box_h)
    if not fitted.truncated:
        assert _ink("".join(fitted.lines)) == _ink(text)
    elif fitted.lines:
        assert fitted.size == min(min_size, box_h)
        assert fitted.lines[-1].endswith(ELLIPSIS)

"""The fitter: wrapping, shrinking, breaking long words, truncating, overflow policies.

The box checks draw the fitted block for real (glyph masks, no clipping) and look at
where the ink landed, so "never leaves its box" is about pixels, not arithmetic.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from memeforge_renderer.engine.draw import Style, stamp
from memeforge_renderer.engine.fit import FittedText, fit_caption, fit_text, stroke_width
from memeforge_renderer.engine.text import ink, normalise, shaper, strong_rtl

pytestmark = pytest.mark.unit

LONG = (
    "WHEN YOU FINALLY FIX THE BUG AT FOUR IN THE MORNING AND THEN REALISE THAT "
    "THE TEST WAS WRONG ALL ALONG AND THE CODE WAS FINE"
)
STYLE = Style(fill=(255, 255, 255), outline=(0, 0, 0))


def ink_box(
    fitted: FittedText, box_w: int, box_h: int, style: Style = STYLE, font: str = "anton"
) -> tuple[int, int, int, int] | None:
    """Where the drawn block's ink lands, in box coordinates (None: nothing drawn)."""
    s = stamp(
        fitted,
        (0, 0, box_w, box_h),
        style,
        shaper(font).space,
        bool(strong_rtl(" ".join(fitted.lines))),
        clip=False,
    )
    if s is None:
        return None
    mask = s.outline_mask or s.fill_mask
    bbox = mask.getbbox()
    if bbox is None:
        return None
    return (s.x + bbox[0], s.y + bbox[1], s.x + bbox[2], s.y + bbox[3])


def assert_inside(fitted: FittedText, box_w: int, box_h: int, font: str = "anton") -> None:
    if fitted.lines:
        assert fitted.stroke == stroke_width(fitted.size) >= 1
        assert fitted.line_height > 0
        assert 0 < fitted.top <= fitted.height <= box_h
        assert fitted.width <= box_w
    found = ink_box(fitted, box_w, box_h, font=font)
    if found is not None:
        x0, y0, x1, y1 = found
        assert x0 >= 0, (found, fitted.lines)
        assert x1 <= box_w, (found, box_w, fitted.lines)
        assert y0 >= 0, (found, fitted.lines)
        assert y1 <= box_h, (found, box_h, fitted.lines)


def test_long_text_wraps_and_every_line_fits() -> None:
    fitted = fit_text(LONG, "anton", 600, 200, max_size=200)
    assert len(fitted.lines) >= 3
    assert not fitted.truncated
    assert_inside(fitted, 600, 200)
    assert ink("".join(fitted.lines)) == ink(LONG)


def test_short_text_is_bigger_than_long_text() -> None:
    short = fit_text("HELLO", "anton", 600, 200, max_size=200)
    long = fit_text(LONG, "anton", 600, 200, max_size=200)
    assert short.size > long.size
    assert short.lines == ("HELLO",)


def test_size_stays_within_bounds() -> None:
    big = fit_text("A", "anton", 2000, 90, max_size=90, min_size=10)
    assert 10 <= big.size <= 90
    assert big.size >= 60  # a single letter in a wide box is limited only by the height
    small = fit_text(LONG, "anton", 300, 60, max_size=60, min_size=12)
    assert 12 <= small.size <= 60


def test_max_font_size_caps_a_short_caption() -> None:
    fitted = fit_text("HI", "anton", 800, 300, max_size=40)
    assert fitted.size == 40


def test_unbreakable_word_is_broken_and_fits() -> None:
    word = "ABCDEFGHIJ" * 20
    fitted = fit_text(word, "anton", 400, 300, max_size=300)
    assert not fitted.truncated
    assert len(fitted.lines) > 1
    assert "".join(fitted.lines) == word
    assert_inside(fitted, 400, 300)


def test_overflow_at_min_size_truncates_with_ellipsis() -> None:
    text = " ".join(["OVERFLOW"] * 400)
    fitted = fit_text(text, "anton", 200, 40, max_size=40, min_size=10)
    assert fitted.truncated
    assert fitted.size == 10
    assert fitted.lines
    assert fitted.lines[-1].endswith("\u2026")
    assert_inside(fitted, 200, 40)


def test_hard_line_breaks_are_kept() -> None:
    fitted = fit_text("TOP LINE\nBOTTOM", "anton", 1000, 300, max_size=300)
    assert fitted.lines == ("TOP LINE", "BOTTOM")


def test_blank_text_draws_nothing() -> None:
    fitted = fit_text(" \n\t ", "anton", 500, 100, max_size=100)
    assert fitted.lines == ()
    assert not fitted.truncated


def test_box_narrower_than_a_letter_draws_nothing() -> None:
    fitted = fit_text("WIDE", "anton", 3, 100, max_size=100)
    assert fitted.lines == ()
    assert fitted.truncated


def test_shrink_wrap_keeps_one_line_while_it_can() -> None:
    text = "ONE DOES NOT SIMPLY WALK INTO MORDOR"
    wrapped = fit_text(text, "anton", 500, 200, max_size=200, overflow="wrap_shrink")
    single = fit_text(text, "anton", 500, 200, max_size=200, overflow="shrink_wrap")
    assert len(wrapped.lines) > 1
    assert single.lines == (text,)
    assert single.size < wrapped.size
    assert_inside(single, 500, 200)


def test_shrink_wrap_wraps_below_min_size() -> None:
    fitted = fit_text(LONG, "anton", 300, 300, max_size=100, min_size=20, overflow="shrink_wrap")
    assert len(fitted.lines) > 1
    assert fitted.size >= 20
    assert not fitted.truncated


def test_ellipsis_policy_never_shrinks() -> None:
    fitted = fit_text(LONG, "anton", 400, 100, max_size=48, min_size=10, overflow="ellipsis")
    assert fitted.size == 48
    assert fitted.truncated
    assert fitted.lines[-1].endswith("\u2026")
    assert_inside(fitted, 400, 100)


def test_outline_width_is_per_box() -> None:
    none = fit_text("HELLO", "anton", 600, 200, max_size=100, outline_em=0.0)
    thick = fit_text("HELLO", "anton", 600, 200, max_size=100, outline_em=0.2)
    assert none.stroke == 0
    assert thick.stroke == 20
    assert ink_box(none, 600, 200) is not None


def test_case_style() -> None:
    assert fit_caption("Hello", "anton", 600, 200, case="none").lines == ("Hello",)
    assert fit_caption("Hello", "anton", 600, 200).lines == ("HELLO",)


@pytest.mark.parametrize(
    ("text", "font"),
    [
        ("\u4e00\u5207\u6b63\u5e38 \u3042\u308a\u304c\u3068\u3046", "anton"),  # CJK, kana
        ("\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645", "anton"),
        ("\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd", "noto-sans"),  # Hebrew
        ("DEPLOY ON FRIDAY \U0001f525\U0001f680 \U0001f469\u200d\U0001f4bb", "anton"),
        ("\u041f\u0420\u0418\u0412\u0415\u0422 \u039a\u039f\u03a3\u039c\u0395", "anton"),
        ("COMBINING E\u0301 AND A\u0308", "anton"),
    ],
)
def test_fallback_scripts_fit_and_have_glyphs(text: str, font: str) -> None:
    fitted = fit_text(text, font, 500, 200, max_size=200)
    assert fitted.missing == 0
    assert not fitted.truncated
    assert ink("".join(fitted.lines)) == ink(text)
    assert_inside(fitted, 500, 200, font=font)


def test_cjk_breaks_between_characters() -> None:
    text = "\u6211\u4eec\u4e00\u8d77\u53bb\u5403\u996d\u5427" * 6
    fitted = fit_text(text, "anton", 300, 300, max_size=120)
    assert len(fitted.lines) > 1
    assert "".join(fitted.lines) == text
    assert_inside(fitted, 300, 300)


_ALPHABET = st.sampled_from(
    [
        *"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!?,.'ÉÄÇẦ     ",
        *("\u4e2d", "\u6587", "\u3042", "\u0645", "\u0631", "\u05e9", "\U0001f600", "e\u0301"),
        *("\U0001f468\u200d\U0001f469", "\u200d", "\U0001f44d\U0001f3fd"),
    ]
)
_TEXT = st.lists(_ALPHABET, min_size=1, max_size=120).map("".join)


@settings(max_examples=70, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    text=_TEXT,
    box_w=st.integers(min_value=20, max_value=900),
    box_h=st.integers(min_value=12, max_value=300),
    min_size=st.integers(min_value=6, max_value=14),
    max_size=st.integers(min_value=8, max_value=300),
    overflow=st.sampled_from(["wrap_shrink", "shrink_wrap", "ellipsis"]),
)
def test_fit_invariants(
    text: str, box_w: int, box_h: int, min_size: int, max_size: int, overflow: str
) -> None:
    fitted = fit_text(
        text, "anton", box_w, box_h, max_size=max_size, min_size=min_size, overflow=overflow
    )
    if not ink(text):
        assert fitted.lines == ()
        return
    # the size stays within [min, max] (a max below the min wins)
    assert min(min_size, max_size) <= fitted.size <= max_size
    # the ink never leaves the box
    assert_inside(fitted, box_w, box_h)
    # every character is drawn, or the box says it was truncated
    if not fitted.truncated:
        assert ink("".join(fitted.lines)) == ink(normalise(text, "none"))
    elif fitted.lines:
        assert fitted.lines[-1].endswith("\u2026")
        drawn = ink("".join(fitted.lines))[:-1]
        assert ink(text).startswith(drawn)

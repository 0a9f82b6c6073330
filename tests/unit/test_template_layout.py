from __future__ import annotations

import pytest
from memeforge_common.limits import MAX_LAYOUT_METADATA_BYTES
from memeforge_common.models import CLASSIC_LAYOUT, TextBox, classic_boxes, fill_layout
from memeforge_common.templates import (
    LayoutTooLarge,
    decode_layout,
    encode_layout,
)

pytestmark = pytest.mark.unit

THREE = tuple(
    TextBox(text="", x=0.05, y=y, width=0.9, height=0.2, align="left", color="#ffcc00")
    for y in (0.0, 0.4, 0.8)
)


def test_captions_fill_boxes_in_order_and_empty_ones_are_dropped() -> None:
    filled = fill_layout(THREE, ["first", "", "third"])
    assert [(b.text, b.y) for b in filled] == [("first", 0.0), ("third", 0.8)]
    assert all(b.align == "left" and b.color == "#ffcc00" for b in filled)


def test_more_captions_than_boxes_is_an_error() -> None:
    with pytest.raises(ValueError, match="4 captions for a layout of 3 boxes"):
        fill_layout(THREE, ["a", "b", "c", "d"])


def test_classic_boxes_is_the_classic_layout_filled() -> None:
    assert classic_boxes("top", "bottom") == fill_layout(CLASSIC_LAYOUT, ["top", "bottom"])


def test_layout_metadata_round_trips_and_is_ascii() -> None:
    encoded = encode_layout(THREE)
    assert encoded.isascii()
    assert decode_layout(encoded) == THREE


def test_unreadable_layout_metadata_falls_back_to_none() -> None:
    assert decode_layout("%7Bnot-json") is None
    assert decode_layout(None) is None


def test_a_layout_too_large_for_s3_metadata_is_refused() -> None:
    """docs/architecture.md "Limits": layout metadata 1600 bytes."""
    busy = tuple(
        TextBox(
            text="",
            x=0.01 * i,
            y=0.01 * i,
            width=0.5,
            height=0.1,
            font="noto-sans",
            color="#123456",
            outline_color="#654321",
            align="right",
            valign="bottom",
            case="none",
            overflow="ellipsis",
            rotation=12.5,
            min_font_size=12,
            max_font_size=90,
        )
        for i in range(16)
    )
    with pytest.raises(LayoutTooLarge, match=str(MAX_LAYOUT_METADATA_BYTES)):
        encode_layout(busy)

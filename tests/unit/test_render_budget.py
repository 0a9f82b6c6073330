"""Bounds checked before a render starts (engine/budget.py, limits.py): output pixels, the
boxes' drawing work and rotation, and the ICC profile a template may carry into outputs."""

from __future__ import annotations

import io
import random
import struct
import zlib

import pytest
from memeforge_common.limits import (
    MAX_ICC_PROFILE_BYTES,
    MAX_OUTPUT_PIXELS,
    MAX_RENDER_WORK_PIXELS,
)
from memeforge_common.models import RenderSpec, TextBox
from memeforge_renderer import engine
from memeforge_renderer.engine.budget import render_work
from PIL import Image

pytestmark = pytest.mark.unit


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares its size, then ends a few pixels in: decoding would fail."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00" * 64)[:-4]  # a truncated stream
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", pixels)


def boxes(n: int, rotation: float = 0.0) -> RenderSpec:
    return RenderSpec(
        boxes=tuple(
            TextBox(text=f"box {i}", x=0, y=0, width=1, height=1, rotation=rotation)
            for i in range(n)
        )
    )


def test_the_huge_trigger_is_refused_before_decoding() -> None:
    # 6324 x 6324 (the PNG), 16 full-image boxes: over the output limit already.
    with pytest.raises(engine.OutputTooLarge) as err:
        engine.render(png_header_only(6324, 6324), boxes(16))
    assert err.value.reason == "output_too_large"
    assert "max_side" in err.value.detail
    # With a max_side that fits, the 16 boxes are what is too expensive.
    spec = boxes(16).model_copy(update={"max_side": 4000})
    with pytest.raises(engine.TooExpensive) as expensive:
        engine.render(png_header_only(6324, 6324), spec)
    assert expensive.value.reason == "too_expensive"


def test_rotation_counts_towards_the_work() -> None:
    side = 3000  # 9 Mpx: one upright full box fits, the same box turned does not
    assert render_work(boxes(1), side, side) <= MAX_RENDER_WORK_PIXELS
    assert render_work(boxes(1, rotation=30), side, side) > MAX_RENDER_WORK_PIXELS
    assert render_work(boxes(1, rotation=30), side, side) > 4 * render_work(boxes(1), side, side)
    with pytest.raises(engine.TooExpensive):
        engine.render(png_header_only(side, side), boxes(1, rotation=30))
    with pytest.raises(engine.CorruptImage):  # within budget: decoding starts (and fails)
        engine.render(png_header_only(side, side), boxes(1))


def test_a_big_template_renders_with_a_max_side_that_fits() -> None:
    big = io.BytesIO()
    Image.new("RGB", (6000, 4500), (20, 40, 60)).save(big, "PNG")
    assert MAX_OUTPUT_PIXELS < 6000 * 4500
    with pytest.raises(engine.OutputTooLarge):
        engine.render(big.getvalue(), boxes(2))
    out = engine.render(big.getvalue(), boxes(2).model_copy(update={"max_side": 2000}))
    assert (out.width, out.height) == (2000, 1500)


def _icc_of(data: bytes) -> bytes | None:
    with Image.open(io.BytesIO(data)) as image:
        icc: bytes | None = image.info.get("icc_profile")
        return icc


def _jpeg_with_icc(icc: bytes) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(out, "JPEG", icc_profile=icc)
    return out.getvalue()


def test_a_huge_icc_profile_goes_into_no_output() -> None:
    icc = random.Random(7).randbytes(5 * 1024 * 1024)
    template = _jpeg_with_icc(icc)
    assert len(template) > 5 * 1024 * 1024
    spec = RenderSpec(
        boxes=(TextBox(text="icc", x=0, y=0, width=1, height=0.5),), thumbnail_side=16
    )
    for fmt in ("jpeg", "png", "webp"):
        out = engine.render(template, spec.model_copy(update={"format": fmt}))
        assert len(out.data) < 64 * 1024, fmt
        assert _icc_of(out.data) is None
        assert out.thumbnail is not None
        assert _icc_of(out.thumbnail) is None
    plain = engine.render(template, RenderSpec(boxes=spec.boxes))  # the spliced JPEG path
    assert len(plain.data) < 64 * 1024
    assert _icc_of(plain.data) is None


def test_a_profile_of_a_real_size_is_kept_in_the_output_but_not_the_thumbnail() -> None:
    srgb = random.Random(3).randbytes(3 * 1024)  # sRGB profiles are ~3 KB
    assert len(srgb) <= MAX_ICC_PROFILE_BYTES
    spec = RenderSpec(
        boxes=(TextBox(text="srgb", x=0, y=0, width=1, height=0.5),), thumbnail_side=16
    )
    out = engine.render(_jpeg_with_icc(srgb), spec)
    assert _icc_of(out.data) == srgb
    assert out.thumbnail is not None
    assert _icc_of(out.thumbnail) is None

"""The C compositing loop (engine/_blend.c) against Pillow, and the drawing it made
faster against the exact drawing it replaced.

Captions used to be drawn into a coverage canvas and a fill canvas, turned into a colour
layer (outline colour where the fill is 0, fill colour where it is 255) and pasted
through the coverage canvas: one rounding of a lerp and one of a paste per pixel. Now
the outline colour and then the fill colour are blended straight onto the pixels: two
roundings where an edge is partly covered twice. The product owners accepted
imperceptible differences; these tests bound them over the golden cases.
"""

from __future__ import annotations

import io
import random
import re

import pytest
from memeforge_renderer.engine import _blend, render
from memeforge_renderer.engine.draw import Stamp, _colour_layer
from memeforge_renderer.engine.layout import place
from memeforge_renderer.engine.render import _stamp
from PIL import Image, ImageChops, ImageStat

from tests.golden.cases import CASES, backdrop

pytestmark = pytest.mark.unit

MAX_CHANNEL_DIFF = 12
"""Largest difference of one channel of one pixel from the exact drawing (0..255),
measured at 1 (white on black: classic, overflow, scripts) and 9 (styles: a yellow fill
on a blue outline). Both ways round about twice per pixel; they part only on
antialiased edge pixels that the fill and the outline both cover in part, where the
exact way mixes the two colours first and this one blends them one after the other: a
few levels on a pixel that is itself a mix of two far-apart colours, at the edge of a
letter, invisible (under 5 % of the colours' distance). The bound leaves a third more."""
MAX_MEAN_DIFF = 0.01
"""Mean absolute difference per channel over each whole golden image, measured at most
0.0022 (overflow): nearly every pixel is the same. Five times that, still far below
what a 1-level change of every pixel of one caption would give."""


def _random_mask(rng: random.Random, w: int, h: int) -> bytes:
    """Clear, solid and partial coverage mixed, as in a glyph's edges."""
    return bytes(rng.choice((0, 0, 255, 255, rng.randrange(256))) for _ in range(w * h))


@pytest.mark.parametrize("seed", range(4))
def test_blend_on_a_grey_canvas_rounds_as_pillows_paste(seed: int) -> None:
    rng = random.Random(seed)
    w, h, mw, mh = 37, 23, 19, 17
    canvas = Image.frombytes("L", (w, h), rng.randbytes(w * h))
    mask = _random_mask(rng, mw, mh)
    pixels = bytearray(canvas.tobytes())
    _blend.blend(pixels, w, h, 1, b"\xff", (0, 0, w, h), 0, 0, [(mask, 5, 3, mw, mh)])
    canvas.paste(255, (5, 3, 5 + mw, 3 + mh), Image.frombytes("L", (mw, mh), mask))
    assert bytes(pixels) == canvas.tobytes()


@pytest.mark.parametrize("seed", range(4))
def test_blend_in_colour_rounds_as_pillows_paste(seed: int) -> None:
    rng = random.Random(seed)
    w, h, mw, mh = 41, 29, 23, 13  # widths not a multiple of 4: the SIMD loop's tail too
    image = Image.frombytes("RGB", (w, h), rng.randbytes(w * h * 3))
    mask = _random_mask(rng, mw, mh)
    colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
    pixels = bytearray(image.tobytes("raw", "RGBX"))
    clip = (0, 0, w, h)
    _blend.blend(pixels, w, h, 4, bytes((*colour, 255)), clip, 2, 1, [(mask, 4, 6, mw, mh)])
    layer = Image.new("RGB", (mw, mh), colour)
    image.paste(layer, (6, 7), Image.frombytes("L", (mw, mh), mask))
    assert Image.frombytes("RGB", (w, h), bytes(pixels), "raw", "RGBX") == image


def test_blend_draws_only_inside_the_clip_and_the_buffer() -> None:
    w, h = 10, 6
    pixels = bytearray(w * h)
    solid = [(b"\xff" * 64, -4, -4, 8, 8), (b"\xff" * 64, 7, 3, 8, 8)]
    _blend.blend(pixels, w, h, 1, b"\xff", (1, 1, 9, 5), 0, 0, solid)
    drawn = {(i % w, i // w) for i, v in enumerate(pixels) if v}
    assert drawn == {(x, y) for x in range(1, 4) for y in range(1, 4)} | {
        (x, y) for x in range(7, 9) for y in range(3, 5)
    }


def test_blend_refuses_a_buffer_smaller_than_its_size() -> None:
    with pytest.raises(ValueError, match="disagree"):
        _blend.blend(bytearray(10), 4, 4, 1, b"\xff", (0, 0, 4, 4), 0, 0, [])
    with pytest.raises(ValueError, match="mask"):
        _blend.blend(bytearray(16), 4, 4, 1, b"\xff", (0, 0, 4, 4), 0, 0, [(b"\x01", 0, 0, 2, 2)])


_RESTART = re.compile(rb"\xff[\xd0-\xd7]")


@pytest.mark.parametrize("seed", range(6))
def test_restart_segments_split_as_the_regex_does(seed: int) -> None:
    """Random bytes thick with 0xFF, markers, stuffed 0xFF 0x00 and runs of 0xFF."""
    rng = random.Random(seed)
    pieces = [b"\xff", b"\xff\x00", b"\xff\xff", b"\xd3", b"\xfe", b"\x00"]
    pieces += [bytes((0xFF, 0xD0 + k)) for k in range(8)]
    data = b"".join(rng.choice(pieces) + rng.randbytes(rng.randrange(3)) for _ in range(400))
    for _ in range(20):
        start = rng.randrange(len(data) + 1)
        end = rng.randrange(start, len(data) + 1)
        assert _blend.restart_segments(data, start, end) == _RESTART.split(data[start:end])


def test_restart_segments_of_a_jpeg_are_its_mcu_rows() -> None:
    image = Image.frombytes("RGB", (48, 40), random.Random(1).randbytes(48 * 40 * 3))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85, subsampling=2, restart_marker_rows=1)
    data = out.getvalue()
    start = data.index(b"\xff\xda") + 2  # start of scan, then its header's length
    start += int.from_bytes(data[start : start + 2], "big")
    assert len(_blend.restart_segments(data, start, len(data) - 2)) == 3  # ceil(40 / 16)
    assert _blend.restart_segments(b"", 0, 0) == [b""]
    assert _blend.restart_segments(b"ab\xff", 0, 3) == [b"ab\xff"]


def test_restart_segments_refuse_bounds_outside_the_data() -> None:
    for start, end in ((-1, 2), (3, 2), (0, 5)):
        with pytest.raises(ValueError, match="start and end"):
            _blend.restart_segments(b"abcd", start, end)
    with pytest.raises(TypeError):
        _blend.restart_segments("not bytes", 0, 1)  # type: ignore[arg-type]


def _exact(template: Image.Image, stamps: list[Stamp]) -> Image.Image:
    """The drawing before the C loop: canvases, a colour layer, one masked paste."""
    image = template.copy()
    for s in stamps:
        if s.outline_mask is None:
            image.paste(Image.new("RGB", s.fill_mask.size, s.style.fill), (s.x, s.y), s.fill_mask)
        else:
            image.paste(_colour_layer(s.fill_mask, s.style), (s.x, s.y), s.outline_mask)
    return image


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_cases_are_within_rounding_of_the_exact_drawing(name: str) -> None:
    """README "Output differs from the exact drawing (canvases, colour layer, masked
    paste) only by rounding at letter edges"."""
    spec = CASES[name]()
    template = Image.open(io.BytesIO(backdrop())).convert("RGB")
    placed = [place(box, *template.size) for box in spec.boxes]
    stamps = [s for p in placed if (s := _stamp(p)) is not None]
    assert stamps
    got = Image.open(io.BytesIO(render(backdrop(), spec).data)).convert("RGB")
    diff = ImageChops.difference(got, _exact(template, stamps))
    stat = ImageStat.Stat(diff)
    worst = max(hi for _, hi in stat.extrema)
    mean = sum(stat.mean) / 3
    assert worst <= MAX_CHANNEL_DIFF, (name, worst, mean)
    assert mean <= MAX_MEAN_DIFF, (name, worst, mean)

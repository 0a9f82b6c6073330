"""Draw fitted captions from cached glyph masks.

Each glyph (or shaped run) is rasterised once per (face, size, outline width) into two
8-bit masks, its whole outlined shape and its fill, kept as bytes in a byte-bounded LRU.
A caption is laid out into a Stamp: where each of those masks goes. Compositing draws
them straight onto the output's pixels with one C loop per caption and colour (_blend):
first the outline colour through every outlined shape, then the fill colour through
every fill, so a neighbour's outline never covers a letter. Up to rounding that is the
old way (coverage and fill canvases, a colour layer, one masked paste); tests bound the
difference. The canvases are still made where a whole block is needed: rotation and
the animated renderer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any, cast

from memeforge_common.limits import GLYPH_CACHE_BYTES
from PIL import Image

from ._blend import blend
from .fit import SAFETY, FittedText, Line
from .lru import ByteLRU
from .text import Run, Token
from .typeface import load_font

# (outline mask or None, dx, dy, width, height, fill mask, dx, dy, width, height, bytes):
# the masks' pixels, where they go from the pen origin, and their sizes
_Glyph = tuple[bytes | None, int, int, int, int, bytes, int, int, int, int, int]

Placement = tuple[bytes, int, int, int, int]
"""A mask's pixels and where it goes in its block: (mask, x, y, width, height)."""


class GlyphCache:
    """Glyph masks by (font file, size, outline width, text, rtl), rasterised on a miss."""

    def __init__(self, max_bytes: int = GLYPH_CACHE_BYTES) -> None:
        self.lru: ByteLRU[tuple[str, int, int, str, bool], _Glyph] = ByteLRU(max_bytes)

    def __len__(self) -> int:
        return len(self.lru)

    @property
    def size_bytes(self) -> int:
        return self.lru.size_bytes

    @property
    def misses(self) -> int:
        return self.lru.misses

    def get(self, path: str, size: int, stroke: int, text: str, rtl: bool) -> _Glyph:
        key = (path, size, stroke, text, rtl)
        glyph = self.lru.get(key)
        if glyph is None:
            glyph = _rasterise(path, size, stroke, text, rtl)
            self.lru.put(key, glyph, glyph[-1])
        return glyph

    def clear(self) -> None:
        self.lru.clear()


MASK_BYTES = 800
"""Memory of one mask beyond its pixels (object header, allocator rounding): measured
from RSS over 14,000 caption-sized CJK glyphs as Pillow images, which cost more than the
bytes kept now, so the budget errs on the safe side."""


def _mask_bytes(mask: Any) -> int:
    w, h = mask.size
    return int(w * h + 8 * h + MASK_BYTES)


def _pixels(mask: Any) -> bytes:
    """The pixels of a mask core from getmask2()."""
    return Image.Image()._new(mask).tobytes()


def _rasterise(path: str, size: int, stroke: int, text: str, rtl: bool) -> _Glyph:
    font = load_font(path, size)
    direction = "rtl" if rtl else None
    fill, (fx, fy) = font.getmask2(text, "L", direction=direction, anchor="ls")
    fw, fh = fill.size
    nbytes = _mask_bytes(fill) + 200
    if stroke:
        ring, (sx, sy) = font.getmask2(
            text, "L", direction=direction, anchor="ls", stroke_width=stroke
        )
        if fw and fh:  # the outlined shape: ring and fill together
            ring.paste(255, (fx - sx, fy - sy, fx - sx + fw, fy - sy + fh), fill)
        nbytes += _mask_bytes(ring)
        return (_pixels(ring), sx, sy, *ring.size, _pixels(fill), fx, fy, fw, fh, nbytes)
    return (None, 0, 0, 0, 0, _pixels(fill), fx, fy, fw, fh, nbytes)


GLYPHS = GlyphCache()


@dataclass(frozen=True)
class Style:
    fill: tuple[int, int, int]
    outline: tuple[int, int, int]
    align: str = "center"
    valign: str = "middle"
    rotation: float = 0.0


@dataclass(eq=False)
class Stamp:
    """A laid-out caption block ready to composite: its masks and where they go.

    ``(ox, oy)`` is the block's top left in the image, ``size`` its size, ``clip`` the
    part of the image it may draw on (the block inside its box)."""

    ox: int
    oy: int
    size: tuple[int, int]
    rings: list[Placement]
    """Outlined shapes (empty without an outline), drawn first in the outline colour."""
    fills: list[Placement]
    style: Style
    clip: tuple[int, int, int, int]

    @property
    def rect(self) -> tuple[int, int, int, int]:
        return self.clip

    @property
    def x(self) -> int:
        return self.clip[0]

    @property
    def y(self) -> int:
        return self.clip[1]

    @cached_property
    def outline_mask(self) -> Image.Image | None:
        """The coverage canvas (union of outlined shapes) over ``rect``; None unoutlined."""
        return self._canvas(self.rings) if self.rings else None

    @cached_property
    def fill_mask(self) -> Image.Image:
        """The fill canvas over ``rect``."""
        return self._canvas(self.fills)

    def _canvas(self, placements: list[Placement]) -> Image.Image:
        x0, y0, x1, y1 = self.clip
        w, h = x1 - x0, y1 - y0
        canvas = bytearray(w * h)
        blend(canvas, w, h, 1, b"\xff", (0, 0, w, h), self.ox - x0, self.oy - y0, placements)
        # frombuffer shares any buffer (typed as bytes only)
        return Image.frombuffer("L", (w, h), cast(bytes, canvas), "raw", "L", 0, 1)


def parse_colour(value: str) -> tuple[int, int, int]:
    v = value.lstrip("#")
    return (int(v[0:2], 16), int(v[2:4], 16), int(v[4:6], 16))


def visual_order(tokens: tuple[Token, ...], base_rtl: bool) -> list[tuple[Token, bool]]:
    """Tokens left to right, each with whether a space precedes it (a small bidi: levels
    per token, neutrals take their neighbours' level, then rule L2 of UAX #9)."""
    if not tokens:
        return []
    strong = [tok.metrics.rtl for tok in tokens]
    if not base_rtl and not any(strong):
        return [(tok, bool(i and tok.space_before)) for i, tok in enumerate(tokens)]
    base = 1 if base_rtl else 0
    levels: list[int] = []
    for d in strong:
        levels.append(-1 if d is None else (1 if d else (2 if base_rtl else 0)))
    for i, lv in enumerate(levels):
        if lv == -1:
            before = next((levels[j] for j in range(i - 1, -1, -1) if levels[j] != -1), base)
            after = next((x for x in levels[i + 1 :] if x != -1), base)
            levels[i] = before if before == after else base
    order = list(range(len(tokens)))
    for level in range(max(levels), 0, -1):
        i = 0
        while i < len(order):
            if levels[order[i]] >= level:
                j = i
                while j < len(order) and levels[order[j]] >= level:
                    j += 1
                order[i:j] = reversed(order[i:j])
                i = j
            else:
                i += 1
    out: list[tuple[Token, bool]] = []
    for pos, idx in enumerate(order):
        if pos == 0:
            out.append((tokens[idx], False))
            continue
        prev = order[pos - 1]
        later = max(prev, idx)
        out.append((tokens[idx], tokens[later].space_before if abs(prev - idx) == 1 else True))
    return out


def _line_px(line: Line, size: int) -> tuple[int, int]:
    """(ink width incl. overhangs, px from the line's left ink edge to the pen origin)."""
    return (
        math.ceil((line.advance + line.over_left + line.over_right) * size),
        math.ceil(line.over_left * size),
    )


def stamp(
    fitted: FittedText,
    rect: tuple[int, int, int, int],
    style: Style,
    space: float,
    base_rtl: bool,
    cache: GlyphCache = GLYPHS,
    *,
    clip: bool = True,
) -> Stamp | None:
    """Rasterise a fitted caption into its block canvases, placed inside ``rect``.

    ``clip=False`` (tests) skips the final clip to the box, to show that the fitter
    alone keeps the ink inside."""
    if not fitted.layout or not any(ln.tokens for ln in fitted.layout):
        return None
    bx, by, bw, bh = rect
    size = fitted.size
    stroke = fitted.stroke
    pad = stroke + SAFETY
    widths = [_line_px(ln, size) for ln in fitted.layout]
    lefts: list[int] = []
    for w, _ in widths:
        full = w + 2 * pad
        if style.align == "left":
            lefts.append(0)
        elif style.align == "right":
            lefts.append(max(0, bw - full))
        else:
            lefts.append(max(0, (bw - full) // 2))
    x0 = min(lefts)
    x1 = max(left + w + 2 * pad for left, (w, _) in zip(lefts, widths, strict=True))
    cw, ch = x1 - x0, fitted.height
    fills: list[Placement] = []
    rings: list[Placement] | None = [] if stroke else None
    baseline = fitted.top
    space_px = space * size
    for line, left, (_, origin) in zip(fitted.layout, lefts, widths, strict=True):
        pen = float(left - x0 + pad + origin)
        for token, spaced in visual_order(line.tokens, base_rtl):
            if spaced:
                pen += space_px
            runs = token.metrics.runs
            if token.metrics.rtl:
                runs = runs[::-1]
            for run in runs:
                pen = _stamp_run(run, pen, baseline, size, stroke, rings, fills, cache)
        baseline += fitted.line_height
    if style.valign == "top":
        top = 0
    elif style.valign == "bottom":
        top = max(0, bh - ch)
    else:
        top = max(0, (bh - ch) // 2)
    ox, oy = bx + x0, by + top
    result = Stamp(ox, oy, (cw, ch), rings or [], fills, style, (ox, oy, ox + cw, oy + ch))
    if style.rotation:
        result = _rotate(result)
    return _clip(result, rect) if clip else result


def _stamp_run(
    run: Run,
    pen: float,
    baseline: int,
    size: int,
    stroke: int,
    rings: list[Placement] | None,
    fills: list[Placement],
    cache: GlyphCache,
) -> float:
    path = run.face.path
    if run.shaped:
        g = cache.get(path, size, stroke, run.text, run.rtl)
        _place(g, round(pen), baseline, rings, fills)
        return pen + run.advance * size
    face = run.face
    advances = face.advances
    kern = face.kerns.peek  # marked as used when the caption was measured
    get = cache.get
    add_fill = fills.append
    add_ring = rings.append if rings is not None else None
    prev = ""
    for ch in run.text:  # the hot loop: where each glyph's masks go
        if prev:
            k = kern(prev + ch)
            if k is None:
                k = face.kern(prev + ch)
            pen += k * size
        if ch != " ":
            rmask, sx, sy, rw, rh, fmask, fx, fy, fw, fh, _ = get(path, size, stroke, ch, False)
            x = round(pen)
            if add_ring is not None and rmask is not None and rw:
                add_ring((rmask, x + sx, baseline + sy, rw, rh))
            if fw:
                add_fill((fmask, x + fx, baseline + fy, fw, fh))
        adv = advances.get(ch)
        pen += (face.advance(ch) if adv is None else adv) * size
        prev = ch
    return pen


def _place(
    g: _Glyph, x: int, y: int, rings: list[Placement] | None, fills: list[Placement]
) -> None:
    rmask, sx, sy, rw, rh, fmask, fx, fy, fw, fh, _ = g
    if rings is not None and rmask is not None and rw and rh:
        rings.append((rmask, x + sx, y + sy, rw, rh))
    if fw and fh:
        fills.append((fmask, x + fx, y + fy, fw, fh))


def _rotate(s: Stamp) -> Stamp:
    """Turn the block about its centre, keeping it centred where it was."""
    w, h = s.size
    cx, cy = s.ox + w / 2, s.oy + h / 2
    angle = s.style.rotation
    fill = s.fill_mask.rotate(angle, Image.Resampling.BICUBIC, expand=True)
    ring = s.outline_mask
    if ring is not None:
        ring = ring.rotate(angle, Image.Resampling.BICUBIC, expand=True)
    nw, nh = fill.size
    ox, oy = round(cx - nw / 2), round(cy - nh / 2)
    return Stamp(
        ox,
        oy,
        (nw, nh),
        [] if ring is None else [(ring.tobytes(), 0, 0, nw, nh)],
        [(fill.tobytes(), 0, 0, nw, nh)],
        s.style,
        (ox, oy, ox + nw, oy + nh),
    )


def _clip(s: Stamp, rect: tuple[int, int, int, int]) -> Stamp | None:
    """Never draw outside the box (the fitter already keeps the ink inside)."""
    bx, by, bw, bh = rect
    x0, y0, x1, y1 = s.clip
    cx0, cy0 = max(x0, bx), max(y0, by)
    cx1, cy1 = min(x1, bx + bw), min(y1, by + bh)
    if cx0 >= cx1 or cy0 >= cy1:
        return None
    return replace(s, clip=(cx0, cy0, cx1, cy1))


def composite(
    pixels: bytearray | memoryview, width: int, height: int, stamps: list[Stamp], offset_y: int = 0
) -> None:
    """Draw stamps onto RGBX ``pixels`` (width x height; row 0 is row ``offset_y`` of
    the output): the outline colour through the outlined shapes, then the fill colour."""
    for s in stamps:
        x0, y0, x1, y1 = s.clip
        clip = (x0, y0 - offset_y, x1, y1 - offset_y)
        oy = s.oy - offset_y
        if s.rings:
            blend(pixels, width, height, 4, _rgbx(s.style.outline), clip, s.ox, oy, s.rings)
        blend(pixels, width, height, 4, _rgbx(s.style.fill), clip, s.ox, oy, s.fills)


def _rgbx(colour: tuple[int, int, int]) -> bytes:
    return bytes((*colour, 255))


def _colour_layer(fill: Image.Image, style: Style) -> Image.Image:
    """Outline colour where the fill mask is 0, fill colour where it is 255."""
    luts = [_lut(o, f) for o, f in zip(style.outline, style.fill, strict=True)]
    if luts[0] is luts[1] is luts[2]:  # grey on grey (white on black): one channel
        grey = fill if luts[0] is _IDENTITY else fill.point(luts[0])
        return grey.convert("RGB")
    return Image.merge("RGB", [fill.point(lut) for lut in luts])


_IDENTITY = list(range(256))
_LUTS: dict[tuple[int, int], list[int]] = {(0, 255): _IDENTITY}


def _lut(outline: int, fill: int) -> list[int]:
    lut = _LUTS.get((outline, fill))
    if lut is None:
        lut = [round(outline + (fill - outline) * v / 255) for v in range(256)]
        lut = _LUTS.setdefault((outline, fill), lut)
    return lut

"""The pure render engine: template bytes + RenderSpec -> image bytes + layout report.

No AWS and no asyncio here (docs/architecture.md, invariant 5): the worker wraps this in a
process pool, the benchmarks time it, the golden-image tests check it.

Fast path (JPEG output): the decoded template comes from the per-process cache, the
captions are laid out from cached glyph masks, and only the MCU rows that a caption
touches are drawn on (draw.composite) and JPEG-encoded; they are spliced between the
template's own cached rows (codec.JpegRows). The bytes are the same as drawing on a
full copy and encoding it all, which is what PNG, WebP and thumbnails still do.
"""

from __future__ import annotations

import io
from time import perf_counter
from typing import Any, cast

from memeforge_common.animation import AnimationLimits
from memeforge_common.limits import MAX_SOURCE_PIXELS
from memeforge_common.models import RenderSpec, TextBox
from PIL import Image, _imaging

from .animated import render_animated
from .budget import check_budget
from .cache import TEMPLATES, CacheKey, Template, content_key
from .codec import CONTENT_TYPES, MCU, decode, encode, encode_rows, jpeg_rows
from .draw import Stamp, composite, stamp
from .errors import ImageTooLarge, TemplateNotCached
from .layout import PlacedText, place
from .output import RenderOutput

SPLICE_MAX_FRACTION = 0.6
"""Above this share of rows touched, encoding the whole image is as cheap."""


def render(
    template: bytes | None,
    spec: RenderSpec,
    *,
    max_source_pixels: int = MAX_SOURCE_PIXELS,
    template_key: str | None = None,
    etag: str | None = None,
    splice: bool = True,
    animation_limits: AnimationLimits | None = None,
) -> RenderOutput:
    """Draw the spec's captions on the template and encode the result.

    With ``template_key`` and ``etag`` the decoded template is cached under them, and
    ``template`` may be None on a hit (TemplateNotCached on a miss); without them it is
    cached under a hash of the bytes. Raises CorruptImage, UnsupportedImage,
    ImageTooLarge, OutputTooLarge or TooExpensive (all RenderError) for bad input, the
    last two before any pixel is decoded. ``splice=False`` forces the full
    encode (tests compare both). GIF output, and WebP of an animated template, are
    animated.py's (``animation_limits`` bound the animation).
    """
    if spec.format == "gif" or spec.keeps_animation:
        animated = render_animated(
            template,
            spec,
            max_source_pixels=max_source_pixels,
            caps=animation_limits or AnimationLimits(),
            template_key=template_key,
            etag=etag,
        )
        if animated is not None:
            return animated
    t0 = perf_counter()
    entry = _template(template, spec, max_source_pixels, template_key, etag)
    key, tpl, cached = entry
    width, height = tpl.image.size
    t1 = perf_counter()
    placed = [place(box, width, height) for box in spec.boxes]
    t2 = perf_counter()
    thumbnail: bytes | None = None
    data: bytes | None = None
    t_encode = 0.0
    stamps: list[Stamp] | None = None
    if spec.format == "jpeg" and not spec.thumbnail_side and splice:
        # Splicing needs every stamp's rows first; check_budget bounds what they hold.
        stamps = [s for p in placed if (s := _stamp(p)) is not None]
        spliced = _jpeg_spliced(key, tpl, stamps, spec.quality)
        if spliced is not None:
            data, t_encode = spliced
    thumb_size: tuple[int, int] | None = None
    if data is None:
        image = _composed(tpl.image, placed, stamps)
        te = perf_counter()
        data = encode(image, fmt=spec.format, quality=spec.quality, icc_profile=tpl.icc_profile)
        if spec.thumbnail_side:
            small = image.copy()
            small.thumbnail((spec.thumbnail_side, spec.thumbnail_side), Image.Resampling.LANCZOS)
            thumb_size = small.size
            # Never a profile in a thumbnail: it would outweigh the pixels.
            thumbnail = encode(small, fmt=spec.format, quality=spec.quality, icc_profile=None)
        t_encode = perf_counter() - te
    t4 = perf_counter()
    report: dict[str, Any] = {
        "boxes": [
            {
                "font_size": p.fitted.size,
                "lines": list(p.fitted.lines),
                "truncated": p.fitted.truncated,
                "missing_glyphs": p.fitted.missing,
            }
            for p in placed
        ],
        "width": width,
        "height": height,
        "bytes": len(data),
        "format": spec.format,
        "thumbnail": (
            None
            if thumbnail is None or thumb_size is None
            else [thumb_size[0], thumb_size[1], len(thumbnail)]
        ),
        "timings_ms": {
            "decode": 0.0 if cached else _ms(t0, t1),
            "layout": _ms(t1, t2),
            "draw": round(max(0.0, (t4 - t2) - t_encode) * 1000, 3),
            "encode": round(t_encode * 1000, 3),
        },
    }
    return RenderOutput(
        data=data,
        content_type=CONTENT_TYPES[spec.format],
        width=width,
        height=height,
        report=report,
        thumbnail=thumbnail,
    )


def _stamp(p: PlacedText) -> Stamp | None:
    return stamp(p.fitted, p.rect.as_tuple(), p.style, p.space, p.base_rtl)


def _composed(
    template: Image.Image, placed: list[PlacedText], stamps: list[Stamp] | None
) -> Image.Image:
    """The template with the captions on it (the template itself when there are none)."""
    if stamps is None:
        stamps = [s for p in placed if (s := _stamp(p)) is not None]
    if not stamps:
        return template
    width, height = template.size
    pixels = bytearray(template.tobytes("raw", "RGBX"))
    composite(pixels, width, height, stamps)
    return _rgbx_image(pixels, width, height).convert("RGB")


def _rgbx_image(pixels: bytearray, width: int, height: int) -> Image.Image:
    """An RGBX image over ``pixels``, no copy (the JPEG encoder takes RGBX as it is)."""
    # frombuffer shares any buffer (typed as bytes only)
    return Image.frombuffer("RGBX", (width, height), cast(bytes, pixels), "raw", "RGBX", 0, 1)


def _template(
    data: bytes | None,
    spec: RenderSpec,
    max_source_pixels: int,
    template_key: str | None,
    etag: str | None,
) -> tuple[CacheKey, Template, bool]:
    max_side = spec.max_side
    if template_key is not None and etag is not None:
        key: CacheKey = (template_key, etag, max_side or 0)
    elif data is not None:
        key = (content_key(data), "", max_side or 0)
    else:
        raise ValueError("give the template bytes, or its key and etag")
    tpl = TEMPLATES.get(key)
    if tpl is not None:
        w, h = tpl.source_size
        if w * h > max_source_pixels:
            raise ImageTooLarge(f"{w}x{h} is {w * h} pixels (limit {max_source_pixels})")
        check_budget(spec, *tpl.image.size)
        return key, tpl, True
    if data is None:
        raise TemplateNotCached(template_key or "")
    decoded = decode(
        data,
        max_source_pixels=max_source_pixels,
        max_side=max_side,
        check_output=lambda w, h: check_budget(spec, w, h),
    )
    tpl = Template(
        image=decoded.image,
        icc_profile=decoded.icc_profile,
        source_format=decoded.format,
        source_size=decoded.source_size,
    )
    TEMPLATES.put(key, tpl)
    return key, tpl, False


def _jpeg_spliced(
    key: CacheKey, tpl: Template, stamps: list[Stamp], quality: int
) -> tuple[bytes, float] | None:
    """Encode only the MCU rows the stamps touch; None when that does not pay or apply."""
    if quality not in tpl.jpeg:
        base = encode(tpl.image, fmt="jpeg", quality=quality, icc_profile=tpl.icc_profile)
        rows = jpeg_rows(base)
        if rows is not None and len(rows.rows) != -(-tpl.image.height // MCU):
            rows = None
        tpl.jpeg[quality] = rows
        TEMPLATES.resized(key)
    rows = tpl.jpeg[quality]
    if rows is None:
        return None
    width, height = tpl.image.size
    bands = _bands([s.rect for s in stamps], height)
    if sum(b - a for a, b in bands) > SPLICE_MAX_FRACTION * len(rows.rows):
        return None
    # All bands stacked in one strip, one encode call: every row is coded on its own, so
    # the strip's rows are the output's rows. Each band is one copy of the template's
    # rows, pasted straight into the strip's memory (Pillow keeps RGB as 4 bytes a pixel).
    # (Caching the template's RGBX bytes would save that copy but more than double a
    # cached template's memory.)
    spans = [(a * MCU, min(b * MCU, height)) for a, b in bands]
    strip_h = sum(y1 - y0 for y0, y1 in spans)
    if not strip_h:
        te = perf_counter()
        return rows.splice({}), perf_counter() - te
    pixels = bytearray(4 * width * strip_h)
    row_of: list[int] = []
    top = 0
    for (a, b), (y0, y1) in zip(bands, spans, strict=True):
        band = memoryview(pixels)[4 * width * top : 4 * width * (top + y1 - y0)]
        # Pillow's core: Image.paste would copy a read-only view of ``pixels`` first, and
        # an Image per band costs more than the paste. The paste clips the template to
        # the band: one copy of its rows.
        view = _imaging.map_buffer(band, (width, y1 - y0), "raw", 0, ("RGBX", 0, 1))
        view.paste(tpl.image.im, (0, -y0, width, height - y0))
        inside = [s for s in stamps if s.rect[1] < y1 and s.rect[3] > y0]
        composite(band, width, y1 - y0, inside, offset_y=y0)
        row_of.extend(range(a, b))
        top += y1 - y0
    te = perf_counter()
    segments = encode_rows(_rgbx_image(pixels, width, strip_h), quality)
    if segments is None:
        return None
    data = rows.splice(dict(zip(row_of, segments, strict=True)))
    return data, perf_counter() - te


def _bands(rects: list[tuple[int, int, int, int]], height: int) -> list[tuple[int, int]]:
    """The MCU row ranges [a, b) that the rectangles touch, merged."""
    spans = sorted(
        (max(0, y0) // MCU, -(-min(height, y1) // MCU)) for _, y0, _, y1 in rects if y1 > y0
    )
    merged: list[tuple[int, int]] = []
    for a, b in spans:
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def warm_up() -> None:
    """Load the fonts and codecs once (the process-pool initializer calls this)."""
    buf = io.BytesIO()
    Image.new("RGB", (320, 240), (90, 120, 150)).save(buf, "JPEG")
    spec = RenderSpec(
        boxes=(
            TextBox(text="warm up", x=0.0, y=0.0, width=1.0, height=0.25),
            TextBox(text="the caption font", x=0.0, y=0.75, width=1.0, height=0.25),
        )
    )
    render(buf.getvalue(), spec)


def _ms(start: float, end: float) -> float:
    return round((end - start) * 1000, 3)

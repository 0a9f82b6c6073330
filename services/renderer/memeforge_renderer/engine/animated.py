"""Animated renders: an animated template captioned on every frame, as GIF or WebP.

The captions are laid out and rasterised once (the still engine's ``place`` and
``stamp``), then composited on every frame at the same place, touching only their own
rectangles. GIF output keeps the template's palette: the caption colours take reserved
entries (exact, never dithered; the antialiased edge is cut at half coverage, since a
GIF pixel is all one colour), every frame after the first stores only what changed, and
a frame that no caption touches reuses its encoded bytes from the previous render of the
same template. WebP output composites RGB frames and lets libwebp's animation encoder
store sub-rectangles, at the spec's own ``animated_quality``.

``format: "gif"`` of a still template is a one-frame GIF made the same way;
``animated: false`` takes the first frame only.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from time import perf_counter
from typing import Any

from memeforge_common.animation import (
    AnimationFacts,
    AnimationLimits,
    AnimationRefused,
    animation_facts,
    check_animation,
)
from memeforge_common.limits import ANIMATION_CACHE_BYTES
from memeforge_common.models import RenderSpec
from PIL import Image

from . import errors
from .budget import check_budget
from .cache import content_key
from .codec import CONTENT_TYPES, decode, encode, target_size
from .draw import Stamp, _colour_layer, stamp
from .frames import (
    PaletteFrames,
    RgbFrames,
    free_entries,
    palette_frames,
    rgb_frames,
    still_palette_frames,
)
from .gif import KEEP, RESTORE, TRAILER, GifFrame, frame_bytes, header, lzw
from .layout import PlacedText, place
from .lru import ByteLRU
from .output import RenderOutput

_STILL = "still"
"""Cached instead of frames: the template is a still (WebP output takes the still path)."""

AnimationKey = tuple[str, str, int, str]
ANIMATIONS: ByteLRU[AnimationKey, PaletteFrames | RgbFrames | str] = ByteLRU(ANIMATION_CACHE_BYTES)

ANIMATED_WEBP_METHOD = 1
"""libwebp's effort per frame: 4 (the stills') took 1.6 s for 40 frames of 480x360, 1 takes
0.4 s for ~15 % more bytes."""

_HALF = [0] * 128 + [255] * 128
RGB = tuple[int, int, int]


@dataclass(frozen=True)
class _Tile:
    """A caption as palette indices, and where its ink is (0 or 255)."""

    x: int
    y: int
    image: Image.Image
    mask: Image.Image

    @property
    def rect(self) -> tuple[int, int, int, int]:
        return (self.x, self.y, self.x + self.image.width, self.y + self.image.height)


def render_animated(
    template: bytes | None,
    spec: RenderSpec,
    *,
    max_source_pixels: int,
    caps: AnimationLimits,
    template_key: str | None = None,
    etag: str | None = None,
) -> RenderOutput | None:
    """Render ``spec`` (GIF output, or WebP keeping an animation). None: the template is
    a still and the output WebP, which the still engine renders. Raises what
    ``engine.render`` raises, and AnimationRefused, OutputBytesTooLarge."""
    t0 = perf_counter()
    key, entry, cached = _entry(template, spec, max_source_pixels, caps, template_key, etag)
    if entry is None:
        return None
    width, height = entry.size
    t1 = perf_counter()
    placed = [place(box, width, height) for box in spec.boxes]
    t2 = perf_counter()
    stamps = [
        s
        for p in placed
        if (s := stamp(p.fitted, p.rect.as_tuple(), p.style, p.space, p.base_rtl)) is not None
    ]
    timings: dict[str, float] = {}
    if isinstance(entry, PaletteFrames):
        grown = len(entry.encoded)
        data, first, timings = _gif(entry, stamps, caps.max_output_bytes)
        if len(entry.encoded) != grown:
            ANIMATIONS.resize(key, entry.nbytes)
    else:
        data, first, timings = _webp(entry, stamps, spec.animated_quality, caps.max_output_bytes)
    timings["draw"] = _ms(t2, perf_counter()) - timings["composite"] - timings["encode"]
    thumbnail, thumb_size = _thumbnail(first, spec)
    report: dict[str, Any] = {
        "boxes": _boxes(placed),
        "width": width,
        "height": height,
        "bytes": len(data),
        "format": spec.format,
        "thumbnail": None if thumbnail is None else [*thumb_size, len(thumbnail)],
        "frames": len(entry.frames),
        "duration_ms": sum(entry.durations),
        "loop": entry.loop,
        "timings_ms": {
            "decode": 0.0 if cached else _ms(t0, t1),
            "layout": _ms(t1, t2),
            **{k: round(v, 3) for k, v in timings.items()},
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


def _entry(
    data: bytes | None,
    spec: RenderSpec,
    max_source_pixels: int,
    caps: AnimationLimits,
    template_key: str | None,
    etag: str | None,
) -> tuple[AnimationKey, PaletteFrames | RgbFrames | None, bool]:
    kind = "webp" if spec.format == "webp" else ("gif" if spec.animated else "gif-first")
    if template_key is not None and etag is not None:
        key: AnimationKey = (template_key, etag, spec.max_side or 0, kind)
    elif data is not None:
        key = (content_key(data), "", spec.max_side or 0, kind)
    else:
        raise ValueError("give the template bytes, or its key and etag")
    found = ANIMATIONS.get(key)
    if found is not None:
        if found == _STILL:
            return key, None, True
        assert not isinstance(found, str)
        w, h = found.source_size
        if w * h > max_source_pixels:
            raise errors.ImageTooLarge(f"{w}x{h} is {w * h} pixels (limit {max_source_pixels})")
        check_budget(spec, *found.size)
        return key, found, True
    if data is None:
        raise errors.TemplateNotCached(template_key or "")
    facts = _facts(data, caps)
    entry: PaletteFrames | RgbFrames
    if facts is None:
        if kind == "webp":
            ANIMATIONS.put(key, _STILL, 64)
            return key, None, False
        decoded = decode(
            data,
            max_source_pixels=max_source_pixels,
            max_side=spec.max_side,
            check_output=lambda w, h: check_budget(spec, w, h),
        )
        entry = still_palette_frames(decoded.image)
    else:
        w, h = facts.width, facts.height
        if w * h > max_source_pixels:
            raise errors.ImageTooLarge(f"{w}x{h} is {w * h} pixels (limit {max_source_pixels})")
        check_budget(spec, *target_size(w, h, spec.max_side))
        first_only = kind == "gif-first"
        if kind == "webp":
            entry = rgb_frames(data, spec.max_side, facts.loop)
        else:
            loop = None if first_only else facts.loop
            entry = palette_frames(data, spec.max_side, loop, first_only=first_only)
    ANIMATIONS.put(key, entry, entry.nbytes)
    return key, entry, False


def _facts(data: bytes, caps: AnimationLimits) -> AnimationFacts | None:
    """The template's animation facts, within the caps (checked before any decoding)."""
    try:
        facts = animation_facts(data, max_frames=caps.max_frames)
        if facts is not None:
            check_animation(facts, caps)
    except AnimationRefused as err:
        raise errors.AnimationRefused(err.reason, err.detail) from err
    return facts


def _gif(
    entry: PaletteFrames, stamps: list[Stamp], max_bytes: int
) -> tuple[bytes, Image.Image, dict[str, float]]:
    palette, index, lut = _caption_palette(entry, stamps)
    tiles = [_tile(s, index) for s in stamps]
    composite_s = encode_s = 0.0
    parts = [header(entry.size, palette, entry.loop)]
    total = len(parts[0])
    first: Image.Image | None = None
    for i, rect in enumerate(entry.rects):
        tc = perf_counter()
        encoded, frame, rect = _frame(entry, i, rect, tiles, lut)
        if i == 0:
            first = frame
        te = perf_counter()
        if encoded is None:
            assert frame is not None
            encoded = lzw(frame)
            if frame is not first and lut is None and not entry.whole:
                entry.encoded[i] = encoded  # only when no caption touches it
        x0, y0, x1, y1 = rect
        disposal = RESTORE if entry.whole else KEEP
        gif = GifFrame(x0, y0, x1 - x0, y1 - y0, encoded, entry.durations[i], disposal)
        part = frame_bytes(gif, entry.keep)
        total += len(part)
        if total > max_bytes:
            raise errors.OutputBytesTooLarge(f"the GIF passes {max_bytes} bytes at frame {i}")
        parts.append(part)
        composite_s += te - tc
        encode_s += perf_counter() - te
    parts.append(TRAILER)
    assert first is not None
    first.putpalette(palette)
    first.info["transparency"] = entry.keep
    timings = {"composite": composite_s * 1000, "encode": encode_s * 1000}
    return b"".join(parts), first, timings


def _frame(
    entry: PaletteFrames,
    i: int,
    rect: tuple[int, int, int, int] | None,
    tiles: list[_Tile],
    lut: list[int] | None,
) -> tuple[bytes | None, Image.Image | None, tuple[int, int, int, int]]:
    """Frame ``i``'s encoded bytes when it has them already, else the block to encode
    (captions on it), and its rectangle."""
    if i == 0 or entry.whole:
        full = (0, 0, *entry.size)
        base = entry.frames[i]
        return None, _captioned(base.point(lut) if lut else base.copy(), tiles, full), full
    if rect is None:  # the same as the frame before: one transparent pixel
        return None, Image.new("P", (1, 1), entry.keep), (0, 0, 1, 1)
    touched = any(_overlap(rect, t.rect) for t in tiles)
    if not touched and lut is None:
        cached = entry.encoded.get(i)
        if cached is not None:
            return cached, None, rect
    block = entry.blocks[i]
    assert block is not None
    if lut:
        block = block.point(lut)
    elif touched:
        block = block.copy()  # the cached block stays as it is
    return None, _captioned(block, tiles, rect) if touched else block, rect


def _captioned(
    block: Image.Image, tiles: list[_Tile], rect: tuple[int, int, int, int]
) -> Image.Image:
    """``block`` (a fresh image, the output's ``rect``) with the caption tiles on it."""
    x0, y0 = rect[0], rect[1]
    for t in tiles:
        if _overlap(rect, t.rect):
            block.paste(t.image, (t.x - x0, t.y - y0), t.mask)
    return block


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _caption_palette(
    entry: PaletteFrames, stamps: list[Stamp]
) -> tuple[list[int], dict[RGB, int], list[int] | None]:
    """The output palette with every caption colour in it exactly, their indices, and
    the index map the frames need for this render (None: no remapping)."""
    colours: list[RGB] = []
    for s in stamps:
        wanted = [s.style.fill] + ([s.style.outline] if s.outline_mask is not None else [])
        colours += [c for c in wanted if c not in colours]
    palette, counts, keep = list(entry.palette), list(entry.counts), entry.keep
    exact = {}
    for i in range(255, -1, -1):  # the lowest used index of each colour wins
        if counts[i] and i != keep:
            exact[(palette[3 * i], palette[3 * i + 1], palette[3 * i + 2])] = i
    missing = [c for c in colours if c not in exact]
    kept = {keep} | {exact[c] for c in colours if c in exact}  # never merged away
    lut = free_entries(palette, counts, len(missing), kept)
    free = [i for i in range(256) if counts[i] == 0 and i != keep]
    index = {c: exact[c] for c in colours if c in exact}
    for colour, i in zip(missing, free, strict=False):
        palette[3 * i : 3 * i + 3] = colour
        index[colour] = i
    return palette, index, lut


def _tile(s: Stamp, index: dict[RGB, int]) -> _Tile:
    fill = s.fill_mask.point(_HALF)
    if s.outline_mask is None:
        return _Tile(s.x, s.y, Image.new("P", fill.size, index[s.style.fill]), fill)
    image = Image.new("P", fill.size, index[s.style.outline])
    image.paste(index[s.style.fill], (0, 0), fill)
    return _Tile(s.x, s.y, image, s.outline_mask.point(_HALF))


def _webp(
    entry: RgbFrames, stamps: list[Stamp], quality: int, max_bytes: int
) -> tuple[bytes, Image.Image, dict[str, float]]:
    tc = perf_counter()
    layers = [(_caption_layer(s), (s.x, s.y), s.outline_mask or s.fill_mask) for s in stamps]
    frames = []
    for frame in entry.frames:
        out = frame.copy()
        for layer, at, mask in layers:
            out.paste(layer, at, mask)
        frames.append(out)
    te = perf_counter()
    buf = io.BytesIO()
    frames[0].save(
        buf,
        "WEBP",
        save_all=True,
        append_images=frames[1:],
        duration=list(entry.durations),
        loop=1 if entry.loop is None else entry.loop,
        quality=quality,
        method=ANIMATED_WEBP_METHOD,
    )
    data = buf.getvalue()
    if len(data) > max_bytes:
        raise errors.OutputBytesTooLarge(f"the WebP is {len(data)} bytes (limit {max_bytes})")
    timings = {"composite": _ms(tc, te), "encode": _ms(te, perf_counter())}
    return data, frames[0], timings


def _caption_layer(s: Stamp) -> Image.Image:
    """The caption's colours, to paste through its coverage mask (as draw.composite)."""
    if s.outline_mask is None:
        return Image.new("RGB", s.fill_mask.size, s.style.fill)
    return _colour_layer(s.fill_mask, s.style)


def _thumbnail(first: Image.Image, spec: RenderSpec) -> tuple[bytes | None, tuple[int, int]]:
    """The first frame, captioned, as a still of the spec's format."""
    if not spec.thumbnail_side:
        return None, (0, 0)
    small = first.convert("RGBA" if first.mode in ("RGBA", "P") else "RGB")
    small.thumbnail((spec.thumbnail_side, spec.thumbnail_side), Image.Resampling.LANCZOS)
    if spec.format == "gif":
        out = io.BytesIO()
        small.save(out, "GIF")
        return out.getvalue(), small.size
    return encode(small, fmt="webp", quality=spec.quality, icc_profile=None), small.size


def _boxes(placed: list[PlacedText]) -> list[dict[str, Any]]:
    return [
        {
            "font_size": p.fitted.size,
            "lines": list(p.fitted.lines),
            "truncated": p.fitted.truncated,
            "missing_glyphs": p.fitted.missing,
        }
        for p in placed
    ]


def _ms(start: float, end: float) -> float:
    return round((end - start) * 1000, 3)

"""An animated template's frames, decoded once per pool process (animated.py caches them).

Pillow composes each frame onto the canvas as the file's disposal and transparency say,
so every frame here is the whole picture a viewer shows at that moment. For GIF output
the frames are kept as palette indices (``PaletteFrames``): a GIF's own frames stay the
indices they were, so no frame is ever quantized again; other sources are mapped once
to one palette. What changed between consecutive frames (the rectangle and the pixels)
is worked out here too, once, so that each render re-encodes only frames its captions
touch. For WebP output the frames are RGB(A) (``RgbFrames``).
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field

from PIL import GifImagePlugin, Image, ImageChops, ImageSequence

from .codec import _DECODE_ERRORS, target_size
from .errors import CorruptImage

# Frames that share the first frame's palette stay palette images (the default turns
# every frame after the first into RGB). Only this module decodes more than a first frame.
GifImagePlugin.LOADING_STRATEGY = GifImagePlugin.LoadingStrategy.RGB_AFTER_DIFFERENT_PALETTE_ONLY

RESERVED = 8
"""Palette entries kept free in every decoded animation: the caption colours of a render
(and the "unchanged" index) take them, so their colours are exact and no frame is
remapped per render. A render needing more frees more, for itself only."""

Rect = tuple[int, int, int, int]
_SAME = [255] + [0] * 255  # an index difference of 0 -> 255 (the pixel did not change)


@dataclass(eq=False)
class PaletteFrames:
    frames: list[Image.Image]
    """Mode P, output size, composed, all indexing ``palette``."""
    palette: list[int]
    """768 values: 256 RGB entries."""
    counts: list[int]
    """Pixels per palette index over all frames (0: free for a caption colour)."""
    keep: int
    """The GIF's transparent index: written where a pixel shows what was there before."""
    whole: bool
    """Some pixel turns transparent after being opaque, which drawing over the previous
    frame cannot show: every frame is then written whole, disposed to the background."""
    rects: list[Rect | None]
    """Per frame, what changed since the previous one (frame 0: everything; None: nothing)."""
    blocks: list[Image.Image | None]
    """Per frame, its ``rect`` cropped, unchanged pixels set to ``keep``."""
    durations: tuple[int, ...]
    loop: int | None
    source_size: tuple[int, int]
    encoded: dict[int, bytes] = field(default_factory=dict)
    """Frame -> its block LZW-encoded, for frames no caption touches (same every render)."""

    @property
    def size(self) -> tuple[int, int]:
        return self.frames[0].size

    @property
    def nbytes(self) -> int:
        pixels = sum(f.width * f.height for f in self.frames)
        pixels += sum(b.width * b.height for b in self.blocks if b is not None)
        return pixels + sum(len(v) for v in self.encoded.values()) + 2048 + 200 * len(self.frames)


@dataclass(eq=False)
class RgbFrames:
    frames: list[Image.Image]
    """RGB, or RGBA when the animation has transparency; output size, composed."""
    durations: tuple[int, ...]
    loop: int | None
    source_size: tuple[int, int]

    @property
    def size(self) -> tuple[int, int]:
        return self.frames[0].size

    @property
    def nbytes(self) -> int:
        return sum(f.width * f.height * len(f.mode) for f in self.frames) + 2048


def _frames(data: bytes, first_only: bool) -> Iterator[tuple[Image.Image, int]]:
    """Each frame, composed, with its duration in ms (CorruptImage when one fails)."""
    try:
        source = Image.open(io.BytesIO(data), formats=("GIF", "WEBP"))
        for frame in ImageSequence.Iterator(source):
            frame.load()
            yield frame.copy(), int(frame.info.get("duration", 0))
            if first_only:
                return
    except _DECODE_ERRORS as exc:
        raise CorruptImage(f"cannot decode an animation frame: {exc}") from exc


def rgb_frames(
    data: bytes, max_side: int | None, loop: int | None, *, first_only: bool = False
) -> RgbFrames:
    frames: list[Image.Image] = []
    durations: list[int] = []
    source_size = (0, 0)
    for frame, duration in _frames(data, first_only):
        source_size = frame.size
        alpha = frame.mode in ("RGBA", "LA", "PA") or "transparency" in frame.info
        image = frame.convert("RGBA" if alpha else "RGB")
        size = target_size(*frame.size, max_side)
        if image.size != size:
            image = image.resize(size, Image.Resampling.LANCZOS)
        frames.append(image)
        durations.append(duration)
    if any(f.mode == "RGBA" for f in frames):
        frames = [f.convert("RGBA") for f in frames]
    return RgbFrames(frames, tuple(durations), loop, source_size)


def palette_frames(
    data: bytes, max_side: int | None, loop: int | None, *, first_only: bool = False
) -> PaletteFrames:
    """Decode an animated GIF or WebP for GIF output."""
    first, _ = next(_frames(data, True))
    source_size = first.size
    size = target_size(*source_size, max_side)
    if first.mode in ("P", "L"):
        palette, keep = _own_palette(first)
    else:  # truecolour (WebP): a palette of its own, and a transparent entry if needed
        palette = _adaptive_palette(data, first_only)
        keep = 256 - RESERVED if first.mode in ("RGBA", "LA", "PA") else None
    mapper = _Mapper(palette, keep)
    frames: list[Image.Image] = []
    durations: list[int] = []
    for frame, duration in _frames(data, first_only):
        same = frame.mode == "P" and frame.getpalette() == first.getpalette()
        frames.append(frame if same and frame.size == size else mapper.map(frame, size))
        durations.append(duration)
    return from_palette_images(frames, palette, keep, tuple(durations), loop, source_size)


def still_palette_frames(image: Image.Image) -> PaletteFrames:
    """One RGB still (a decoded template) as a one-frame animation, for GIF output."""
    palette = _quantized_palette([image])
    frame = _Mapper(palette, None).map(image, image.size)
    return from_palette_images([frame], palette, None, (0,), None, image.size)


def from_palette_images(
    frames: list[Image.Image],
    palette: list[int],
    keep: int | None,
    durations: tuple[int, ...],
    loop: int | None,
    source_size: tuple[int, int],
) -> PaletteFrames:
    counts = [0] * 256
    for f in frames:
        for i, n in enumerate(f.histogram()[:256]):
            counts[i] += n
    transparent = keep is not None
    protect = {keep} if keep is not None else set()
    lut = free_entries(palette, counts, RESERVED, protect)
    if lut is not None:
        frames = [f.point(lut) for f in frames]
    if keep is None:
        keep = next(i for i in range(256) if counts[i] == 0)
    rects: list[Rect | None] = [(0, 0, *frames[0].size)]
    blocks: list[Image.Image | None] = [None]
    whole = False
    for prev, frame in itertools.pairwise(frames):
        diff = ImageChops.difference(frame, prev)
        rect = diff.getbbox()
        if transparent and not whole:
            whole = _holes(frame, prev, keep)
        rects.append(rect)
        if rect is None:
            blocks.append(None)
            continue
        block = frame.crop(rect)
        block.paste(keep, (0, 0), _indices(diff.crop(rect)).point(_SAME))
        blocks.append(block)
    if whole:
        blocks = [None] * len(frames)
    return PaletteFrames(
        frames, palette, counts, keep, whole, rects, blocks, durations, loop, source_size
    )


def free_entries(
    palette: list[int], counts: list[int], n: int, protect: set[int]
) -> list[int] | None:
    """Make ``n`` palette entries unused (``counts`` updated): the least-used entries are
    merged into their nearest colours. Returns the index map for the frames, or None
    when enough were free already."""
    free = [i for i in range(256) if counts[i] == 0 and i not in protect]
    if len(free) >= n:
        return None
    used = sorted((counts[i], i) for i in range(256) if counts[i] and i not in protect)
    victims = {i for _, i in used[: n - len(free)]}
    targets = [i for _, i in used if i not in victims]
    lut = list(range(256))
    for v in victims:
        lut[v] = min(targets, key=lambda t: _distance(palette, v, t))
        counts[lut[v]] += counts[v]
        counts[v] = 0
    return lut


def _distance(palette: list[int], a: int, b: int) -> int:
    return sum((palette[3 * a + k] - palette[3 * b + k]) ** 2 for k in range(3))


def _holes(frame: Image.Image, prev: Image.Image, keep: int) -> bool:
    """Does a pixel turn transparent (``keep``) that was opaque in ``prev``?"""
    now = _indices(frame).point([255 if v == keep else 0 for v in range(256)])
    before = _indices(prev).point([0 if v == keep else 255 for v in range(256)])
    return ImageChops.multiply(now, before).getbbox() is not None


def _indices(image: Image.Image) -> Image.Image:
    """A palette image's indices as an L image (no palette lookup)."""
    return Image.frombytes("L", image.size, image.tobytes())


def _own_palette(first: Image.Image) -> tuple[list[int], int | None]:
    raw = first.getpalette() if first.mode == "P" else None
    palette = (raw or [v for i in range(256) for v in (i, i, i)])[:768]
    palette += [0] * (768 - len(palette))
    keep = first.info.get("transparency")
    return palette, keep if isinstance(keep, int) else None


def _adaptive_palette(data: bytes, first_only: bool) -> list[int]:
    """One palette for a truecolour animation, from up to 16 of its frames, made small."""
    samples = [frame for frame, _ in _frames(data, first_only)]
    step = max(1, len(samples) // 16)
    small = []
    for frame in samples[::step]:
        image = frame.convert("RGB")
        image.thumbnail((160, 160))
        small.append(image)
    return _quantized_palette(small)


def _quantized_palette(images: list[Image.Image]) -> list[int]:
    """A median-cut palette of the images side by side, RESERVED entries short of 256."""
    width = sum(i.width for i in images)
    sheet = Image.new("RGB", (width, max(i.height for i in images)))
    x = 0
    for image in images:
        sheet.paste(image.convert("RGB"), (x, 0))
        x += image.width
    quantized = sheet.quantize(256 - RESERVED, Image.Quantize.MEDIANCUT)
    palette = (quantized.getpalette() or [])[: 3 * (256 - RESERVED)]
    return palette + [0] * (768 - len(palette))


class _Mapper:
    """Frames of another palette, size or mode mapped to one palette (nearest colour, no
    dithering: dithered pixels would change from frame to frame)."""

    def __init__(self, palette: list[int], keep: int | None) -> None:
        self.keep = keep
        self.image = Image.new("P", (1, 1))
        self.image.putpalette(palette)
        self.palette = palette
        if keep is not None:  # an opaque pixel that lands on it must not turn transparent
            others = [i for i in range(256) if i != keep]
            self.instead = min(others, key=lambda i: _distance(palette, keep, i))

    def map(self, frame: Image.Image, size: tuple[int, int]) -> Image.Image:
        rgba = frame.convert("RGBA")
        if rgba.size != size:
            rgba = rgba.resize(size, Image.Resampling.LANCZOS)
        mapped = rgba.convert("RGB").quantize(palette=self.image, dither=Image.Dither.NONE)
        if self.keep is not None:
            landed = _indices(mapped).point([255 if v == self.keep else 0 for v in range(256)])
            mapped.paste(self.instead, (0, 0), landed)
            clear = rgba.getchannel("A").point([255] * 128 + [0] * 128)
            mapped.paste(self.keep, (0, 0), clear)
        mapped.putpalette(self.palette)
        return mapped

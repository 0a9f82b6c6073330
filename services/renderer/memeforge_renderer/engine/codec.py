"""Bytes <-> pixels: guarded decoding of the template, encoding of the result."""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from memeforge_common.limits import MAX_ICC_PROFILE_BYTES
from PIL import Image, ImageOps, JpegImagePlugin, UnidentifiedImageError

from ._blend import restart_segments
from .errors import CorruptImage, ImageTooLarge, UnsupportedImage

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF")

CONTENT_TYPES = {
    "jpeg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
    "gif": "image/gif",
}
PNG_COMPRESS_LEVEL = 3
WEBP_METHOD = 4

# Signatures of image formats we recognise but do not accept (anything else is corrupt).
_OTHER_IMAGE_MAGIC = (
    b"II*\x00",  # TIFF
    b"MM\x00*",  # TIFF
    b"BM",  # BMP
    b"\x00\x00\x01\x00",  # ICO
    b"8BPS",  # PSD
    b"\x00\x00\x00\x0cjP  ",  # JPEG 2000
    b"\xff\x4f\xff\x51",  # JPEG 2000 codestream
    b"qoif",  # QOI
    b"\x76\x2f\x31\x01",  # OpenEXR
)
_OTHER_FTYP_BRANDS = (b"avif", b"avis", b"heic", b"heix", b"hevc", b"mif1", b"msf1")

# What Pillow raises on malformed input while parsing headers or decoding pixels.
_DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    KeyError,
    TypeError,
    struct.error,
)


@dataclass(frozen=True)
class Decoded:
    image: Image.Image
    """RGB, upright (EXIF orientation applied), first frame, at the output size."""
    format: str
    icc_profile: bytes | None
    """Kept for the output when it describes RGB pixels and is at most
    MAX_ICC_PROFILE_BYTES (an attacker's 5 MB "profile" would go into every output)."""
    source_size: tuple[int, int]
    """Upright size before any scaling."""


def target_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """The output size: the longest side at most ``max_side``, aspect kept, never larger."""
    if not max_side or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def decode(
    data: bytes,
    *,
    max_source_pixels: int,
    max_side: int | None = None,
    check_output: Callable[[int, int], None] | None = None,
) -> Decoded:
    """Decode a template; the pixel count is checked from the header before any decoding,
    and so is ``check_output(width, height)`` of the output size, which may raise.

    A JPEG at least twice the output size is decoded at a reduced scale (libjpeg's DCT
    scaling, "draft" mode), then resampled to the exact output size.
    """
    try:
        source = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(str(exc)) from exc
    except UnidentifiedImageError as exc:
        if _is_other_image(data):
            raise UnsupportedImage("accepted formats: JPEG, PNG, WebP, GIF") from exc
        raise CorruptImage("not a JPEG, PNG, WebP or GIF image") from exc
    except _DECODE_ERRORS as exc:
        raise CorruptImage(f"unreadable image header: {exc}") from exc
    # No close(): the source reads from memory, and closing would free the pixels too.
    fmt = str(source.format)
    width, height = source.size
    if width * height > max_source_pixels:
        raise ImageTooLarge(
            f"{width}x{height} is {width * height} pixels (limit {max_source_pixels})"
        )
    if check_output is not None:
        # Before getexif(), which may read the whole file (PNG): either orientation.
        for size in {(width, height), (height, width)}:
            check_output(*target_size(*size, max_side))
    try:
        turned = source.getexif().get(0x0112, 1) in (5, 6, 7, 8)
        upright = (height, width) if turned else (width, height)
        out_w, out_h = target_size(*upright, max_side)
        if fmt == "JPEG" and out_w * 2 <= upright[0] and out_h * 2 <= upright[1]:
            source.draft("RGB", (out_h, out_w) if turned else (out_w, out_h))
        source.load()  # the first frame of an animation
        icc = source.info.get("icc_profile") if source.mode in ("RGB", "RGBA") else None
        if icc and len(icc) > MAX_ICC_PROFILE_BYTES:
            icc = None
        ImageOps.exif_transpose(source, in_place=True)
        image = _to_rgb(source)
        if image.size != (out_w, out_h):
            image = image.resize((out_w, out_h), Image.Resampling.LANCZOS)
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(str(exc)) from exc
    except _DECODE_ERRORS as exc:
        raise CorruptImage(f"cannot decode {fmt}: {exc}") from exc
    return Decoded(image=image, format=fmt, icc_profile=icc or None, source_size=upright)


def encode(image: Image.Image, *, fmt: str, quality: int, icc_profile: bytes | None) -> bytes:
    """JPEG (baseline, 4:2:0, a restart marker per MCU row: see jpeg_rows), PNG or WebP."""
    out = io.BytesIO()
    if fmt == "jpeg":
        image.save(out, "JPEG", icc_profile=icc_profile, **jpeg_options(quality))
    elif fmt == "png":
        image.save(out, "PNG", compress_level=PNG_COMPRESS_LEVEL, icc_profile=icc_profile)
    elif fmt == "webp":
        image.save(out, "WEBP", quality=quality, method=WEBP_METHOD, icc_profile=icc_profile)
    else:
        raise ValueError(f"unknown output format {fmt!r}")
    return out.getvalue()


def jpeg_options(quality: int) -> dict[str, Any]:
    return {
        "quality": quality,
        "optimize": False,
        "progressive": False,
        "subsampling": 2,  # 4:2:0, 16x16 MCUs
        "restart_marker_rows": 1,
    }


MCU = 16
_RST = [bytes((0xFF, 0xD0 + i)) for i in range(8)]
EOI = b"\xff\xd9"


@dataclass(frozen=True, eq=False)
class JpegRows:
    """A baseline JPEG cut at its restart markers: one entropy-coded segment per MCU row.

    Every row starts with fresh DC predictors and the Huffman tables are the standard ones,
    so a row encoded on its own (same quality, same width, 16-row aligned) has exactly
    the bytes it has inside the whole image. Re-encoding only the rows a caption touches
    and splicing them between the template's cached rows gives the same file as
    encoding the whole composed image.
    """

    header: bytes
    rows: tuple[bytes, ...]

    @property
    def nbytes(self) -> int:
        return len(self.header) + sum(len(r) for r in self.rows)

    @cached_property
    def _parts(self) -> list[bytes]:
        """header, row 0, RST0, row 1, RST1, ..., last row, EOI: row i is at 1 + 2 * i."""
        parts = [self.header]
        for i, row in enumerate(self.rows):
            if i:
                parts.append(_RST[(i - 1) & 7])
            parts.append(row)
        parts.append(EOI)
        return parts

    def splice(self, replacements: dict[int, bytes]) -> bytes:
        parts = self._parts.copy()
        for i, row in replacements.items():
            parts[1 + 2 * i] = row
        return b"".join(parts)


def jpeg_rows(data: bytes) -> JpegRows | None:
    """Split a JPEG written with ``jpeg_options`` into header and MCU rows (None if not)."""
    i = 2
    n = len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if marker == 0xDA:  # start of scan: entropy-coded data follows
            start = i + 2 + length
            if not data.endswith(EOI):
                return None
            return JpegRows(data[:start], tuple(restart_segments(data, start, n - 2)))
        i += 2 + length
    return None


def encode_rows(image: Image.Image, quality: int) -> tuple[bytes, ...] | None:
    """The MCU-row segments of ``image`` (a band of a larger image) encoded on its own."""
    rows = jpeg_rows(jpeg_bytes(image, quality))
    if rows is None or len(rows.rows) != -(-image.height // MCU):
        return None
    return rows.rows


def jpeg_bytes(image: Image.Image, quality: int) -> bytes:
    """``image.save(out, "JPEG", **jpeg_options(quality))``'s bytes, straight from
    Pillow's encoder: the save's Python layers (format lookup, option parsing, the tile
    loop) cost about 45 us a call, a tenth of encoding a caption band. The encoder's
    settings are what JpegImagePlugin._save passes for those options (no profile, no
    EXIF, no DPI); tests check the bytes against a save."""
    config = (quality, False, 0, False, False, 0, [0, 0], 2, 0, 1, None, b"", b"", b"")
    rawmode = JpegImagePlugin.RAWMODE[image.mode]
    encoder = Image._getencoder(image.mode, "jpeg", rawmode, config)
    try:
        encoder.setimage(image.im, (0, 0, *image.size))
        parts: list[bytes] = []
        status = 0
        while not status:
            _, status, chunk = encoder.encode(_JPEG_CHUNK)
            parts.append(chunk)
    finally:
        encoder.cleanup()
    if status < 0:
        raise OSError(f"JPEG encoder error {status}")
    return b"".join(parts)


_JPEG_CHUNK = 1 << 20
"""Bytes the encoder hands back per call: a caption band's rows in one go."""


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB pixels; anything transparent is composited over white."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I", "I;16", "I;16B", "I;16L"):  # 16-bit grey PNG: scale, don't clip
        return image.convert("I").point(lambda v: v / 256).convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return image.convert("RGB")


def _is_other_image(data: bytes) -> bool:
    head = data[:16]
    if head.startswith(_OTHER_IMAGE_MAGIC):
        return True
    if head[4:8] == b"ftyp" and head[8:12] in _OTHER_FTYP_BRANDS:
        return True
    text = data[:256].lstrip().lower()
    return text.startswith(b"<svg") or (text.startswith(b"<?xml") and b"<svg" in data[:4096])

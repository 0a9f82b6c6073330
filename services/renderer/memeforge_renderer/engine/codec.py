"""Bytes <-> pixels: guarded decoding of the template, JPEG encoding of the result."""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import CorruptImage, ImageTooLarge, UnsupportedImage

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF")

CONTENT_TYPES = {"jpeg": "image/jpeg"}

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
    """RGB, upright (EXIF orientation applied), first frame."""
    format: str
    icc_profile: bytes | None
    """Kept for the output when it describes RGB pixels."""


def decode(data: bytes, *, max_source_pixels: int) -> Decoded:
    """Decode a template; the pixel count is checked from the header before any decoding."""
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
    try:
        source.load()  # the first frame of an animation
        icc = source.info.get("icc_profile") if source.mode in ("RGB", "RGBA") else None
        ImageOps.exif_transpose(source, in_place=True)
        image = _to_rgb(source)
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(str(exc)) from exc
    except _DECODE_ERRORS as exc:
        raise CorruptImage(f"cannot decode {fmt}: {exc}") from exc
    return Decoded(image=image, format=fmt, icc_profile=icc or None)


def encode(image: Image.Image, *, fmt: str, quality: int, icc_profile: bytes | None) -> bytes:
    if fmt != "jpeg":
        raise ValueError(f"unknown output format {fmt!r}")
    out = io.BytesIO()
    image.save(
        out,
        "JPEG",
        quality=quality,
        optimize=False,
        progressive=False,
        icc_profile=icc_profile,
    )
    return out.getvalue()


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

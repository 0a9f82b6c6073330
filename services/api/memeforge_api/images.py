"""Check that an upload is a real, bounded image before it is stored as a template.

Only the accepted formats' decoders ever see the bytes (``formats=``). A JPEG is verified
by decoding it at 1/8 scale (libjpeg's DCT scaling still reads every entropy-coded
byte, so truncation and corruption fail the same way) with 1/64 of the memory; other
formats are decoded in full. Routes run this under UPLOAD_DECODES, so concurrent uploads
cannot add up past the api's memory limit.
"""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass

from memeforge_common.limits import MAX_CONCURRENT_UPLOAD_DECODES
from PIL import Image, UnidentifiedImageError

ACCEPTED_FORMATS = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "GIF": "image/gif",
}


UPLOAD_DECODES = asyncio.Semaphore(MAX_CONCURRENT_UPLOAD_DECODES)
"""Held around every inspect_image call of this process."""

JPEG_VERIFY_SCALE = 8


class InvalidImage(ValueError):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class ImageFacts:
    content_type: str
    width: int
    height: int


def inspect_image(data: bytes, *, max_pixels: int) -> ImageFacts:
    """Identify the format from the bytes (never trust the client's Content-Type)."""
    try:
        with Image.open(io.BytesIO(data), formats=tuple(ACCEPTED_FORMATS)) as image:
            fmt = image.format or ""
            width, height = image.size
            if width * height > max_pixels:
                raise InvalidImage(
                    "image-too-large",
                    f"{width}x{height} exceeds the limit of {max_pixels} pixels",
                )
            if fmt == "JPEG":
                image.draft(image.mode, (width // JPEG_VERIFY_SCALE, height // JPEG_VERIFY_SCALE))
            image.load()  # decodes the pixels: truncated or corrupt data fails here
    except InvalidImage:
        raise
    # Fixed texts: PIL's messages name its BytesIO, heap address included.
    except Image.DecompressionBombError as err:
        raise InvalidImage("image-too-large", f"more than {max_pixels} pixels") from err
    except UnidentifiedImageError as err:
        other = _other_format(data)
        if other:
            raise InvalidImage(
                "unsupported-image-format", f"{other} is not accepted; use JPEG, PNG, WebP or GIF"
            ) from err
        raise InvalidImage("invalid-image", "not a JPEG, PNG, WebP or GIF image") from err
    except (OSError, SyntaxError, ValueError) as err:
        raise InvalidImage("invalid-image", "corrupt or truncated image data") from err
    return ImageFacts(ACCEPTED_FORMATS[fmt], width, height)


def _other_format(data: bytes) -> str:
    """The name of a format we do not accept, from its header alone ("" if none)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.format or ""
    except Exception:  # unreadable by any plugin: not an image at all
        return ""

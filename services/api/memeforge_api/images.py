"""Check that an upload is a real, bounded image before it is stored as a template."""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

ACCEPTED_FORMATS = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "GIF": "image/gif",
}


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
        with Image.open(io.BytesIO(data)) as image:
            fmt = image.format or ""
            width, height = image.size
            if fmt not in ACCEPTED_FORMATS:
                raise InvalidImage(
                    "unsupported-image-format",
                    f"{fmt or 'unknown'} is not accepted; use JPEG, PNG, WebP or GIF",
                )
            if width * height > max_pixels:
                raise InvalidImage(
                    "image-too-large",
                    f"{width}x{height} exceeds the limit of {max_pixels} pixels",
                )
            image.load()  # decodes the pixels: truncated or corrupt data fails here
    except InvalidImage:
        raise
    # Fixed texts: PIL's messages name its BytesIO, heap address included.
    except Image.DecompressionBombError as err:
        raise InvalidImage("image-too-large", f"more than {max_pixels} pixels") from err
    except UnidentifiedImageError as err:
        raise InvalidImage("invalid-image", "not a JPEG, PNG, WebP or GIF image") from err
    except (OSError, SyntaxError, ValueError) as err:
        raise InvalidImage("invalid-image", "corrupt or truncated image data") from err
    return ImageFacts(ACCEPTED_FORMATS[fmt], width, height)

"""Check that an upload is a real, bounded image before it is stored as a template.

Only the accepted formats' decoders ever see the bytes (``formats=``). A JPEG is verified
by decoding it at 1/8 scale (libjpeg's DCT scaling still reads every entropy-coded
byte, so truncation and corruption fail the same way) with 1/64 of the memory; other
formats are decoded in full. An animated GIF or WebP has its frames counted and timed
from its blocks first (memeforge_common/animation.py), and only within the caps are all
its frames decoded. Routes run this through ``check_upload``, whose pool of
MAX_CONCURRENT_UPLOAD_DECODES threads bounds how many decodes add up in the api's memory.
"""

from __future__ import annotations

import asyncio
import functools
import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from memeforge_common.animation import (
    AnimationFacts,
    AnimationLimits,
    AnimationRefused,
    animation_facts,
    check_animation,
)
from memeforge_common.limits import MAX_CONCURRENT_UPLOAD_DECODES
from PIL import Image, ImageSequence, UnidentifiedImageError

ACCEPTED_FORMATS = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "GIF": "image/gif",
}


# A thread pool rather than an asyncio.Semaphore: it bounds the decodes of the whole
# process whatever event loop asks (the app's, or a test's), and queues the rest.
_DECODERS = ThreadPoolExecutor(MAX_CONCURRENT_UPLOAD_DECODES, thread_name_prefix="decode")

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
    animation: AnimationFacts | None = None
    """None for a still image."""


def inspect_image(
    data: bytes, *, max_pixels: int, caps: AnimationLimits | None = None
) -> ImageFacts:
    """Identify the format from the bytes (never trust the client's Content-Type)."""
    caps = caps or AnimationLimits()
    animation: AnimationFacts | None = None
    try:
        with Image.open(io.BytesIO(data), formats=tuple(ACCEPTED_FORMATS)) as image:
            fmt = image.format or ""
            width, height = image.size
            if width * height > max_pixels:
                raise InvalidImage(
                    "image-too-large",
                    f"{width}x{height} exceeds the limit of {max_pixels} pixels",
                )
            if fmt in ("GIF", "WEBP"):
                animation = animation_facts(data, max_frames=caps.max_frames)
            if animation is not None:
                check_animation(animation, caps)  # before any frame is decoded
                for frame in ImageSequence.Iterator(image):
                    frame.load()  # every frame decodes, within the caps just checked
            else:
                if fmt == "JPEG":
                    scale = JPEG_VERIFY_SCALE
                    image.draft(image.mode, (width // scale, height // scale))
                image.load()  # decodes the pixels: truncated or corrupt data fails here
    except InvalidImage:
        raise
    except AnimationRefused as err:
        raise InvalidImage(err.code, err.detail) from err
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
    return ImageFacts(ACCEPTED_FORMATS[fmt], width, height, animation)


def _other_format(data: bytes) -> str:
    """The name of a format we do not accept, from its header alone ("" if none)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.format or ""
    except Exception:  # unreadable by any plugin: not an image at all
        return ""


async def check_upload(
    data: bytes, *, max_pixels: int, caps: AnimationLimits | None = None
) -> ImageFacts:
    """``inspect_image`` off the event loop, at most MAX_CONCURRENT_UPLOAD_DECODES at once."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(
        _DECODERS, functools.partial(inspect_image, data, max_pixels=max_pixels, caps=caps)
    )

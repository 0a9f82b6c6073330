"""GIF bytes from palette frames: our own block writer around Pillow's LZW encoder.

Writing the blocks ourselves lets every frame be only the rectangle that changed, with
pixels that did not change set to the transparent index (LZW packs those runs into
almost nothing), and lets a frame no caption touches reuse its encoded bytes from an
earlier render. Pillow's writer would compare and re-palette every frame again.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image

KEEP = 1
"""Disposal "do not dispose": the next frame draws over this one."""
RESTORE = 2
"""Disposal "restore to background" (transparent, as browsers do)."""


@dataclass(frozen=True)
class GifFrame:
    x: int
    y: int
    width: int
    height: int
    lzw: bytes
    """The image data: LZW minimum code size, sub-blocks, terminator."""
    duration_ms: int
    disposal: int


def lzw(block: Image.Image) -> bytes:
    """The LZW-coded image data of a palette image (Pillow's encoder, cut out of the
    one-frame GIF it writes)."""
    out = io.BytesIO()
    block.save(out, "GIF", optimize=False, interlace=False)
    data = out.getvalue()
    packed = data[10]
    pos = 13 + (3 << ((packed & 7) + 1) if packed & 0x80 else 0)
    while data[pos] == 0x21:  # extensions before the image: skip them
        pos += 2
        while data[pos]:
            pos += data[pos] + 1
        pos += 1
    local = data[pos + 9]
    pos += 10 + (3 << ((local & 7) + 1) if local & 0x80 else 0)
    return data[pos:-1]  # up to the trailer


def header(size: tuple[int, int], palette: list[int], loop: int | None) -> bytes:
    width, height = size
    parts = [
        b"GIF89a",
        width.to_bytes(2, "little"),
        height.to_bytes(2, "little"),
        bytes((0xF7, 0, 0)),  # a 256-entry global colour table; background 0; no aspect
        bytes(palette[:768]),
    ]
    if loop is not None:
        parts.append(b"\x21\xff\x0bNETSCAPE2.0\x03\x01" + loop.to_bytes(2, "little") + b"\x00")
    return b"".join(parts)


def frame_bytes(frame: GifFrame, transparent: int) -> bytes:
    delay = round(frame.duration_ms / 10)
    control = bytes((0x21, 0xF9, 4, (frame.disposal << 2) | 1))
    control += delay.to_bytes(2, "little") + bytes((transparent, 0))
    descriptor = b"\x2c" + b"".join(
        v.to_bytes(2, "little") for v in (frame.x, frame.y, frame.width, frame.height)
    )
    return control + descriptor + b"\x00" + frame.lzw


TRAILER = b"\x3b"

"""The pure render engine: template bytes + RenderSpec -> JPEG bytes + layout report.

No AWS and no asyncio here (DESIGN.md, invariant 5): the worker wraps this in a
process pool, the benchmarks time it, the golden-image tests check it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from time import perf_counter
from typing import Any

from memeforge_common.models import RenderSpec, TextBox
from PIL import Image

from .codec import CONTENT_TYPES, decode, encode
from .draw import draw_captions
from .layout import place

DEFAULT_MAX_SOURCE_PIXELS = 40_000_000


@dataclass(frozen=True)
class RenderOutput:
    data: bytes
    content_type: str
    width: int
    height: int
    report: dict[str, Any]


def render(
    template: bytes, spec: RenderSpec, *, max_source_pixels: int = DEFAULT_MAX_SOURCE_PIXELS
) -> RenderOutput:
    """Draw the spec's captions on the template and encode the result.

    Raises CorruptImage, UnsupportedImage or ImageTooLarge (all RenderError) for bad input.
    """
    t0 = perf_counter()
    decoded = decode(template, max_source_pixels=max_source_pixels)
    image = decoded.image
    width, height = image.size
    t1 = perf_counter()
    placed = [place(box, width, height) for box in spec.boxes]
    t2 = perf_counter()
    draw_captions(image, placed)
    t3 = perf_counter()
    data = encode(image, fmt=spec.format, quality=spec.quality, icc_profile=decoded.icc_profile)
    t4 = perf_counter()
    report: dict[str, Any] = {
        "boxes": [
            {
                "font_size": p.fitted.size,
                "lines": list(p.fitted.lines),
                "truncated": p.fitted.truncated,
            }
            for p in placed
        ],
        "width": width,
        "height": height,
        "bytes": len(data),
        "timings_ms": {
            "decode": _ms(t0, t1),
            "layout": _ms(t1, t2),
            "draw": _ms(t2, t3),
            "encode": _ms(t3, t4),
        },
    }
    return RenderOutput(
        data=data,
        content_type=CONTENT_TYPES[spec.format],
        width=width,
        height=height,
        report=report,
    )


def warm_up() -> None:
    """Load the font and codecs once (the process-pool initializer calls this)."""
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

"""What a render will cost, bounded before any pixel is decoded (limits.py has the limits).

The cost of drawing grows with the boxes' area in output pixels, and turning a box with
its extent; neither depends on the text, so both are known from the spec and the output
size alone (the template's header gives that).
"""

from __future__ import annotations

import math

from memeforge_common.limits import (
    MAX_OUTPUT_PIXELS,
    MAX_RENDER_WORK_PIXELS,
    ROTATION_COST_FACTOR,
)
from memeforge_common.models import RenderSpec

from .errors import OutputTooLarge, TooExpensive


def render_work(spec: RenderSpec, width: int, height: int) -> int:
    """The spec's caption work on a ``width`` x ``height`` output, in pixels."""
    work = 0.0
    for box in spec.boxes:
        w, h = box.width * width, box.height * height
        work += w * h
        if box.rotation:
            a = math.radians(box.rotation)
            c, s = abs(math.cos(a)), abs(math.sin(a))
            work += ROTATION_COST_FACTOR * (w * c + h * s) * (w * s + h * c)
    return round(work)


def check_budget(
    spec: RenderSpec,
    width: int,
    height: int,
    *,
    max_output_pixels: int = MAX_OUTPUT_PIXELS,
    max_work_pixels: int = MAX_RENDER_WORK_PIXELS,
) -> None:
    """Raise OutputTooLarge or TooExpensive for a render that must not start."""
    if width * height > max_output_pixels:
        raise OutputTooLarge(
            f"output {width}x{height} is {width * height} pixels (limit {max_output_pixels});"
            " ask for a smaller max_side"
        )
    work = render_work(spec, width, height)
    if work > max_work_pixels:
        raise TooExpensive(
            f"the boxes cost {work} pixels of drawing on {width}x{height}"
            f" (limit {max_work_pixels}); use fewer, smaller or unrotated boxes"
        )

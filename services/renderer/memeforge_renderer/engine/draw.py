"""Draw placed captions: white Anton with a black outline, centred in each box."""

from __future__ import annotations

from collections.abc import Iterable

from PIL import Image, ImageDraw

from .layout import PlacedText
from .typeface import FONT_PATH, load_font

FILL = (255, 255, 255)
OUTLINE = (0, 0, 0)


def draw_captions(image: Image.Image, placed: Iterable[PlacedText]) -> None:
    """Draw onto ``image`` in place; boxes with no lines draw nothing."""
    draw: ImageDraw.ImageDraw | None = None
    for item in placed:
        fitted = item.fitted
        if not fitted.lines:
            continue
        draw = draw or ImageDraw.Draw(image)
        font = load_font(FONT_PATH, fitted.size)
        rect = item.rect
        centre_x = rect.x + rect.width / 2
        baseline = rect.y + (rect.height - fitted.height) // 2 + fitted.top
        for line in fitted.lines:
            if line:
                draw.text(
                    (centre_x, baseline),
                    line,
                    font=font,
                    fill=FILL,
                    anchor="ms",
                    stroke_width=fitted.stroke,
                    stroke_fill=OUTLINE,
                )
            baseline += fitted.line_height

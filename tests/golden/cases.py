"""The golden layouts: a handful of representative specs on generated templates.

Each case renders to PNG (lossless, so only layout and rasterisation show up in a diff).
``make golden-update`` (``python -m tests.golden.cases --update``) rewrites the PNGs next
to this file; do that only when fonts or drawing change on purpose, and look at them.
"""

from __future__ import annotations

import argparse
import io
from collections.abc import Callable
from pathlib import Path

from memeforge_common.models import RenderSpec, TextBox, classic_boxes
from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent
W, H = 480, 360


def backdrop(width: int = W, height: int = H) -> bytes:
    """A deterministic picture: two gradients and a few shapes (PNG, lossless)."""
    g = Image.linear_gradient("L")
    across = g.transpose(Image.Transpose.ROTATE_90).resize((width, height))
    g = g.resize((width, height))
    image = Image.merge("RGB", (g, across, g.point(lambda v: 90)))
    draw = ImageDraw.Draw(image)
    draw.ellipse((width * 0.3, height * 0.3, width * 0.7, height * 0.7), fill=(200, 60, 40))
    draw.rectangle((0, height * 0.45, width, height * 0.55), fill=(30, 30, 30))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def _box(text: str, x: float, y: float, w: float, h: float, **style: object) -> TextBox:
    return TextBox.model_validate({"text": text, "x": x, "y": y, "width": w, "height": h, **style})


CASES: dict[str, Callable[[], RenderSpec]] = {
    "classic": lambda: RenderSpec(
        boxes=classic_boxes("one does not simply", "write a golden test"), format="png"
    ),
    "styles": lambda: RenderSpec(
        boxes=(
            _box("left and yellow", 0.02, 0.02, 0.96, 0.2, align="left", color="#ffdd00"),
            _box(
                "right, blue outline",
                0.02,
                0.24,
                0.96,
                0.2,
                align="right",
                outline_color="#1030c0",
                outline_width=0.12,
            ),
            _box(
                "No outline, case kept",
                0.02,
                0.6,
                0.96,
                0.16,
                case="none",
                outline_width=0,
                color="#101010",
                font="noto-sans",
            ),
            _box("bottom", 0.02, 0.78, 0.96, 0.2, valign="bottom", max_font_size=30),
        ),
        format="png",
    ),
    "overflow": lambda: RenderSpec(
        boxes=(
            _box(
                "when you finally fix the bug at four in the morning and the test was wrong",
                0.02,
                0.02,
                0.46,
                0.45,
            ),
            _box(
                "when you finally fix the bug at four in the morning and the test was wrong",
                0.52,
                0.02,
                0.46,
                0.45,
                overflow="shrink_wrap",
            ),
            _box(
                "when you finally fix the bug at four in the morning and the test was wrong "
                "all along and the code was fine",
                0.02,
                0.53,
                0.96,
                0.2,
                overflow="ellipsis",
                max_font_size=40,
            ),
            _box("x" * 300, 0.02, 0.76, 0.96, 0.22, min_font_size=12),
        ),
        format="png",
    ),
    "rotated": lambda: RenderSpec(
        boxes=(
            _box("tilted caption", 0.1, 0.1, 0.8, 0.5, rotation=20),
            _box("upside down", 0.1, 0.65, 0.8, 0.3, rotation=180, color="#00ff88"),
        ),
        format="png",
    ),
    "scripts": lambda: RenderSpec(
        boxes=(
            _box(
                "mixed \u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645"
                " text",
                0.02,
                0.02,
                0.96,
                0.22,
            ),
            _box("\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd 123", 0.02, 0.26, 0.96, 0.22),
            _box(
                "\u6211\u4eec\u4e00\u8d77\u53bb\u5403\u996d\u5427 \u3042\u308a\u304c\u3068\u3046",
                0.02,
                0.5,
                0.96,
                0.22,
            ),
            _box(
                "ship it \U0001f525\U0001f680 caf\u00e9 \u041f\u0420\u0418\u0412\u0415\u0422",
                0.02,
                0.76,
                0.96,
                0.22,
            ),
        ),
        format="png",
    ),
}


def render_case(name: str) -> bytes:
    from memeforge_renderer.engine import render

    return render(backdrop(), CASES[name]()).data


def path_of(name: str) -> Path:
    return HERE / f"{name}.png"


def main() -> None:
    parser = argparse.ArgumentParser(description="Regenerate the golden layout images.")
    parser.add_argument("--update", action="store_true", help="write the PNGs")
    args = parser.parse_args()
    for name in CASES:
        data = render_case(name)
        if args.update:
            path_of(name).write_bytes(data)
            print(f"wrote {path_of(name).relative_to(HERE.parent.parent)} ({len(data):,} bytes)")
        else:
            print(f"{name}: {len(data):,} bytes (pass --update to write)")


if __name__ == "__main__":
    main()

"""Test images made on the fly: smooth content so JPEG re-encoding barely changes it."""

from __future__ import annotations

import io

from PIL import Image


def gradient(width: int = 640, height: int = 480, fmt: str = "JPEG") -> bytes:
    image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    tinted = Image.merge(
        "RGB",
        (
            image.getchannel(0),
            image.getchannel(0).point(lambda v: v // 2),
            Image.new("L", (width, height), 90),
        ),
    )
    out = io.BytesIO()
    options = {"quality": 92} if fmt == "JPEG" else {}
    tinted.save(out, fmt, **options)
    return out.getvalue()


def region_diff(a: Image.Image, b: Image.Image, box: tuple[int, int, int, int]) -> float:
    """Mean absolute difference (0..255) of two images inside box."""
    from PIL import ImageChops, ImageStat

    diff = ImageChops.difference(a.crop(box).convert("L"), b.crop(box).convert("L"))
    return float(ImageStat.Stat(diff).mean[0])

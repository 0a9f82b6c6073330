"""Test images made on the fly: smooth content so JPEG re-encoding barely changes it."""

from __future__ import annotations

import io

from memeforge_common.templates import TemplateStore
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


def animation_frames(count: int, size: tuple[int, int] = (96, 72)) -> list[Image.Image]:
    """Frames of a square sliding over mid-tone stripes (no pure white or black, so any
    such pixel in a render is caption ink)."""
    from PIL import ImageDraw

    width, height = size
    frames = []
    for i in range(count):
        frame = Image.new("RGB", size, (60, 90, 120))
        draw = ImageDraw.Draw(frame)
        for x in range(0, width, 16):
            draw.rectangle((x, 0, x + 7, height), fill=(90, 130, 100))
        x = (i * 7) % max(1, width - 12)
        draw.rectangle((x, height // 2 - 6, x + 12, height // 2 + 6), fill=(200, 80, 60))
        frames.append(frame)
    return frames


def animated(
    fmt: str = "GIF",
    count: int = 5,
    size: tuple[int, int] = (96, 72),
    durations: list[int] | int = 80,
    loop: int | None = 0,
) -> bytes:
    """An animated GIF or WebP of ``animation_frames`` (GIF: one shared palette)."""
    frames = animation_frames(count, size)
    if fmt == "GIF":
        palette = frames[0].quantize(32)
        frames = [f.quantize(palette=palette, dither=Image.Dither.NONE) for f in frames]
    out = io.BytesIO()
    options = {} if loop is None else {"loop": loop}
    if fmt == "WEBP":
        options["lossless"] = True
    frames[0].save(out, fmt, save_all=True, append_images=frames[1:], duration=durations, **options)
    return out.getvalue()


async def store_gradient_template(
    templates: TemplateStore, template_id: str, *, tenant: str, size: tuple[int, int] = (32, 32)
) -> str:
    """A gradient JPEG stored as ``tenant``'s template ``template_id``; its ETag."""
    width, height = size
    return await templates.upload(
        template_id,
        tenant=tenant,
        name=template_id,
        data=gradient(width, height),
        content_type="image/jpeg",
        width=width,
        height=height,
    )

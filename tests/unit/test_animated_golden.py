"""Animated renders: timing, loop and frame count as in the source; captions at the same
place on every frame; GIF caption colours exact and the picture around them untouched.

The frames are compared with the source decoded the same way, and the caption ink with
the still engine's drawing of the same spec (the layout golden tests pin that one).
"""

from __future__ import annotations

import io

import pytest
from memeforge_common.models import RenderSpec, TextBox
from memeforge_renderer import engine
from PIL import Image, ImageChops, ImageDraw, ImageSequence, ImageStat

from tests.support.images import animated, animation_frames, gradient

pytestmark = pytest.mark.unit

FILL, OUTLINE = (255, 204, 0), (16, 48, 192)  # neither is in the source's palette
DURATIONS = [40, 50, 60, 70, 80, 90, 100, 110, 120]
SIZE = (160, 120)
BOXES = (
    TextBox(text="top caption", x=0.03, y=0.02, width=0.94, height=0.3, color="#ffcc00",
            outline_color="#1030c0", valign="top"),
    TextBox(text="bottom", x=0.03, y=0.68, width=0.94, height=0.3, color="#ffcc00",
            outline_color="#1030c0", valign="bottom"),
)  # fmt: skip
SAMPLED = (0, len(DURATIONS) // 2, len(DURATIONS) - 1)  # first, middle, last


def _frames(data: bytes) -> tuple[Image.Image, list[Image.Image], list[int]]:
    image = Image.open(io.BytesIO(data))
    frames, durations = [], []
    for frame in ImageSequence.Iterator(image):
        frames.append(frame.convert("RGBA"))
        durations.append(frame.info.get("duration", 0))
    return image, frames, durations


def _mask(image: Image.Image, colour: tuple[int, int, int]) -> Image.Image:
    """255 where ``image`` is exactly ``colour`` (and opaque)."""
    target = Image.new("RGBA", image.size, (*colour, 255))
    diff = ImageChops.difference(image, target).convert("RGB").convert("L")
    return diff.point([255] + [0] * 255)


def _ink(image: Image.Image) -> Image.Image:
    return ImageChops.lighter(_mask(image, FILL), _mask(image, OUTLINE))


def _pixels(mask: Image.Image) -> int:
    return round(ImageStat.Stat(mask).sum[0] / 255)


def _in_boxes(mask: Image.Image) -> bool:
    w, h = mask.size
    outside = mask.copy()
    for box in BOXES:
        rect = (round(box.x * w), round(box.y * h))
        end = (round((box.x + box.width) * w), round((box.y + box.height) * h))
        ImageDraw.Draw(outside).rectangle((*rect, end[0] - 1, end[1] - 1), fill=0)
    return outside.getbbox() is None


def _full_palette_gif(count: int) -> bytes:
    """Colour noise: every one of the 256 palette entries in use, 70 ms a frame."""
    frames = [
        Image.merge("RGB", [Image.effect_noise(SIZE, 90 + 10 * i) for i in range(3)])
        for _ in range(count)
    ]
    palette = frames[0].quantize(256)
    frames = [f.quantize(palette=palette, dither=Image.Dither.NONE) for f in frames]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=70, loop=0)
    return buf.getvalue()


@pytest.fixture(scope="module")
def gif_source() -> bytes:
    return animated("GIF", count=len(DURATIONS), size=SIZE, durations=DURATIONS, loop=2)


def test_gif_keeps_frames_durations_and_loop(gif_source: bytes) -> None:
    out = engine.render(gif_source, RenderSpec(boxes=BOXES, format="gif"))
    image, frames, durations = _frames(out.data)
    assert out.content_type == "image/gif"
    assert len(frames) == len(DURATIONS)
    assert durations == DURATIONS
    assert image.info.get("loop") == 2
    assert (out.report["frames"], out.report["duration_ms"], out.report["loop"]) == (
        len(DURATIONS),
        sum(DURATIONS),
        2,
    )
    assert {"decode", "layout", "draw", "composite", "encode"} <= set(out.report["timings_ms"])


def test_gif_caption_pixels_are_exact_and_in_place_on_every_sampled_frame(
    gif_source: bytes,
) -> None:
    out = engine.render(gif_source, RenderSpec(boxes=BOXES, format="gif"))
    _, frames, _ = _frames(out.data)
    _, source, _ = _frames(gif_source)
    inks = [_ink(frames[k]) for k in SAMPLED]
    fills = [_mask(frames[k], FILL) for k in SAMPLED]
    assert _pixels(fills[0]) > 300
    assert _pixels(_mask(frames[0], OUTLINE)) > 300
    assert _in_boxes(inks[0])
    for k, ink, fill in zip(SAMPLED, inks, fills, strict=True):
        assert ImageChops.difference(ink, inks[0]).getbbox() is None, f"frame {k} moved"
        assert ImageChops.difference(fill, fills[0]).getbbox() is None, f"frame {k} fill"
        # Everything that is not caption ink is the source frame, exactly (no dithering,
        # no halo of in-between colours).
        picture = Image.composite(Image.new("RGBA", SIZE), frames[k], ink)
        expected = Image.composite(Image.new("RGBA", SIZE), source[k], ink)
        assert ImageChops.difference(picture, expected).getbbox() is None, f"frame {k}"


def test_gif_captions_are_drawn_where_the_still_engine_draws_them(gif_source: bytes) -> None:
    out = engine.render(gif_source, RenderSpec(boxes=BOXES, format="gif"))
    _, frames, _ = _frames(out.data)
    first = io.BytesIO()
    animation_frames(1, SIZE)[0].save(first, "PNG")
    still = engine.render(first.getvalue(), RenderSpec(boxes=BOXES, format="png"))
    still_rgb = Image.open(io.BytesIO(still.data)).convert("RGB")
    near_fill = ImageChops.difference(still_rgb, Image.new("RGB", SIZE, FILL)).convert("L")
    still_fill = near_fill.point([255 if v < 60 else 0 for v in range(256)])
    gif_fill = _mask(frames[0], FILL)
    both = _pixels(ImageChops.multiply(still_fill, gif_fill))
    either = _pixels(ImageChops.lighter(still_fill, gif_fill))
    assert both / either > 0.85  # the same glyphs; only the cut of the antialiased edge differs


def test_gif_caption_colours_stay_exact_when_the_source_palette_is_full() -> None:
    """256 colours used: the least-used are merged to make room for the caption's."""
    data = _full_palette_gif(4)
    assert len([c for c in Image.open(io.BytesIO(data)).histogram() if c]) > 250
    out = engine.render(data, RenderSpec(boxes=BOXES, format="gif"))
    _, rendered, durations = _frames(out.data)
    assert durations == [70] * 4
    fills = [_mask(f, FILL) for f in rendered]
    assert _pixels(fills[0]) > 300
    assert all(ImageChops.difference(f, fills[0]).getbbox() is None for f in fills)


def test_more_caption_colours_than_reserved_entries_are_all_exact() -> None:
    """Twelve colours on a full palette: the render frees entries for itself."""
    colours = [(250, 10 + 20 * i, 5) for i in range(12)]
    boxes = tuple(
        TextBox(text="ab", x=(i % 4) * 0.25, y=(i // 4) * 0.33, width=0.25, height=0.33,
                color="#" + bytes(c).hex(), outline_width=0)
        for i, c in enumerate(colours)
    )  # fmt: skip
    out = engine.render(_full_palette_gif(3), RenderSpec(boxes=boxes, format="gif"))
    _, rendered, _ = _frames(out.data)
    for colour in colours:
        masks = [_mask(f, colour) for f in rendered]
        assert _pixels(masks[0]) > 20, colour
        assert all(ImageChops.difference(m, masks[0]).getbbox() is None for m in masks)


def test_transparency_and_disposal_are_kept() -> None:
    """A sprite that moves over a transparent canvas, each frame disposed to the
    background: the pixels it leaves turn transparent again in the output too."""
    frames = []
    for i in range(5):
        frame = Image.new("P", SIZE, 0)
        frame.putpalette([0, 0, 0, 200, 80, 60, 60, 120, 200] + [0] * 759)
        ImageDraw.Draw(frame).rectangle((10 + 25 * i, 50, 40 + 25 * i, 80), fill=1 + i % 2)
        frames.append(frame)
    buf = io.BytesIO()
    frames[0].save(
        buf, "GIF", save_all=True, append_images=frames[1:], duration=80, loop=0,
        transparency=0, disposal=2,
    )  # fmt: skip
    out = engine.render(buf.getvalue(), RenderSpec(boxes=BOXES, format="gif"))
    _, rendered, _ = _frames(out.data)
    _, source, _ = _frames(buf.getvalue())
    assert len(rendered) == 5
    for k, (got, want) in enumerate(zip(rendered, source, strict=True)):
        ink = _ink(got)
        clear = Image.new("RGBA", SIZE)
        got_alpha = Image.composite(clear, got, ink).getchannel("A")
        want_alpha = Image.composite(clear, want, ink).getchannel("A")
        assert ImageChops.difference(got_alpha, want_alpha).getbbox() is None, f"frame {k}"


def test_webp_keeps_frames_durations_and_loop_with_the_captions_in_place() -> None:
    source = animated("WEBP", count=len(DURATIONS), size=SIZE, durations=DURATIONS, loop=2)
    out = engine.render(source, RenderSpec(boxes=BOXES, format="webp", animated_quality=90))
    image, frames, durations = _frames(out.data)
    assert out.content_type == "image/webp"
    assert (len(frames), durations, image.info.get("loop")) == (len(DURATIONS), DURATIONS, 2)
    _, source_frames, _ = _frames(source)
    for k in SAMPLED:  # lossy: the still engine's drawing of that frame, to codec loss
        png = io.BytesIO()
        source_frames[k].convert("RGB").save(png, "PNG")
        still = engine.render(png.getvalue(), RenderSpec(boxes=BOXES, format="png"))
        want = Image.open(io.BytesIO(still.data)).convert("RGB")
        diff = ImageChops.difference(frames[k].convert("RGB"), want).convert("L")
        alone = io.BytesIO()
        want.save(alone, "WEBP", quality=90)  # what the codec alone loses on that picture
        floor = ImageChops.difference(Image.open(alone).convert("RGB"), want).convert("L")
        assert ImageStat.Stat(diff).mean[0] < ImageStat.Stat(floor).mean[0] + 0.5, f"frame {k}"


def test_still_formats_and_animated_false_take_the_first_frame(gif_source: bytes) -> None:
    png = engine.render(gif_source, RenderSpec(boxes=BOXES, format="png"))
    assert getattr(Image.open(io.BytesIO(png.data)), "n_frames", 1) == 1
    gif = engine.render(gif_source, RenderSpec(boxes=BOXES, format="gif", animated=False))
    _, frames, _ = _frames(gif.data)
    assert len(frames) == 1
    assert gif.report["frames"] == 1
    _, source, _ = _frames(gif_source)
    ink = _ink(frames[0])
    picture = Image.composite(Image.new("RGBA", SIZE), frames[0], ink)
    expected = Image.composite(Image.new("RGBA", SIZE), source[0], ink)
    assert ImageChops.difference(picture, expected).getbbox() is None


def test_a_still_template_as_gif_is_one_frame_with_exact_caption_colours() -> None:
    out = engine.render(gradient(*SIZE), RenderSpec(boxes=BOXES, format="gif"))
    _, frames, _ = _frames(out.data)
    assert len(frames) == 1
    assert _pixels(_mask(frames[0], FILL)) > 300
    assert _pixels(_mask(frames[0], OUTLINE)) > 300


def test_the_thumbnail_is_the_first_frame_as_a_still(gif_source: bytes) -> None:
    spec = RenderSpec(boxes=BOXES, format="gif", thumbnail_side=64)
    out = engine.render(gif_source, spec)
    assert out.thumbnail is not None
    thumb = Image.open(io.BytesIO(out.thumbnail))
    assert getattr(thumb, "n_frames", 1) == 1
    assert max(thumb.size) == 64
    assert out.report["thumbnail"] == [*thumb.size, len(out.thumbnail)]


def test_a_second_render_reuses_the_frames_no_caption_touches(gif_source: bytes) -> None:
    """Cached by key and ETag: the same bytes again, with only touched frames re-encoded."""
    engine.ANIMATIONS.clear()
    spec = RenderSpec(boxes=BOXES, format="gif")
    first = engine.render(gif_source, spec, template_key="templates/public/a", etag='"1"')
    entry = engine.ANIMATIONS.peek(("templates/public/a", '"1"', 0, "gif"))
    assert entry is not None
    assert not isinstance(entry, str)
    assert entry.encoded  # the square moves in the middle band: the captions miss it
    again = engine.render(None, spec, template_key="templates/public/a", etag='"1"')
    assert again.data == first.data
    assert again.report["timings_ms"]["decode"] == 0.0

"""The pure render engine: bytes + spec -> image bytes + layout report."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from memeforge_common.limits import MAX_CAPTION_CHARS
from memeforge_common.models import LayoutReport, RenderSpec, TextBox, classic_boxes
from memeforge_renderer.engine import (
    TEMPLATES,
    CorruptImage,
    ImageTooLarge,
    RenderError,
    RenderOutput,
    TemplateNotCached,
    UnsupportedImage,
    pillow_build,
    render,
    warm_up,
)
from memeforge_renderer.engine.codec import jpeg_bytes, jpeg_options
from PIL import Image, ImageChops, ImageDraw, ImageStat

from tests.support.captions import PATHOLOGICAL

pytestmark = pytest.mark.unit

W, H = 800, 600
CAPTIONS = RenderSpec(boxes=classic_boxes("one does not simply", "write a render engine"))


def template(
    size: tuple[int, int] = (W, H), fmt: str = "JPEG", mode: str = "RGB", **save: object
) -> bytes:
    """A generated picture: a gradient with a few shapes (nothing copyrighted)."""
    gradient = Image.linear_gradient("L").resize(size)
    image = Image.merge("RGB", (gradient, gradient.transpose(Image.Transpose.ROTATE_180), gradient))
    draw = ImageDraw.Draw(image)
    draw.ellipse(
        (size[0] // 4, size[1] // 4, size[0] * 3 // 4, size[1] * 3 // 4), fill=(200, 60, 40)
    )
    if mode != "RGB":
        image = image.convert(mode)
    buf = io.BytesIO()
    image.save(buf, fmt, **save)
    return buf.getvalue()


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def mean_diff(a: Image.Image, b: Image.Image, box: tuple[int, int, int, int]) -> float:
    diff = ImageChops.difference(a.crop(box), b.crop(box)).convert("L")
    return float(ImageStat.Stat(diff).mean[0])


@pytest.fixture(scope="module")
def jpeg() -> bytes:
    return template(quality=90)


def test_captions_change_their_boxes_and_only_them(jpeg: bytes) -> None:
    out = render(jpeg, CAPTIONS)
    assert isinstance(out, RenderOutput)
    assert out.content_type == "image/jpeg"
    assert (out.width, out.height) == (W, H)
    result = decode(out.data)
    assert result.format == "JPEG"
    assert result.size == (W, H)
    source = decode(jpeg).convert("RGB")
    top = (0, 0, W, int(H * 0.24))
    bottom = (0, int(H * 0.76), W, H)
    middle = (0, int(H * 0.30), W, int(H * 0.70))
    assert mean_diff(source, result, top) > 20
    assert mean_diff(source, result, bottom) > 20
    assert mean_diff(source, result, middle) < 2
    boxes = out.report["boxes"]
    assert [b["lines"] for b in boxes] == [["ONE DOES NOT SIMPLY"], ["WRITE A RENDER ENGINE"]]
    assert all(b["font_size"] >= 40 and not b["truncated"] for b in boxes)


def test_text_is_white_with_a_black_outline(jpeg: bytes) -> None:
    spec = RenderSpec(boxes=(TextBox(text="I" * 3, x=0.0, y=0.0, width=1.0, height=0.3),))
    out = decode(render(jpeg, spec).data).convert("L").crop((0, 0, W, int(H * 0.3)))
    lo, hi = out.getextrema()
    assert hi > 240
    assert lo < 15


def test_report_has_the_documented_keys(jpeg: bytes) -> None:
    out = render(jpeg, CAPTIONS)
    report = out.report
    assert set(report) == {
        "boxes",
        "width",
        "height",
        "bytes",
        "format",
        "thumbnail",
        "timings_ms",
    }
    assert set(report["timings_ms"]) == {"decode", "layout", "draw", "encode"}
    assert all(v >= 0 for v in report["timings_ms"].values())
    assert report["bytes"] == len(out.data)
    assert (report["width"], report["height"]) == (W, H)
    for box in report["boxes"]:
        assert set(box) == {"font_size", "lines", "truncated", "missing_glyphs"}
    stored = LayoutReport.model_validate(report)  # what the renderer stores on the item
    assert stored.boxes[0].lines == ("ONE DOES NOT SIMPLY",)


def test_empty_boxes_draw_nothing(jpeg: bytes) -> None:
    spec = RenderSpec(
        boxes=(
            TextBox(text="", x=0.0, y=0.0, width=1.0, height=0.3),
            TextBox(text="  \n\t", x=0.0, y=0.7, width=1.0, height=0.3),
        ),
        quality=80,
    )
    out = render(jpeg, spec)
    buf = io.BytesIO()
    decode(jpeg).convert("RGB").save(buf, "JPEG", **jpeg_options(80))
    assert out.data == buf.getvalue()
    assert [b["lines"] for b in out.report["boxes"]] == [[], []]


def test_quality_is_applied(jpeg: bytes) -> None:
    low = render(jpeg, CAPTIONS.model_copy(update={"quality": 20}))
    high = render(jpeg, CAPTIONS.model_copy(update={"quality": 95}))
    assert len(low.data) < len(high.data)


@pytest.mark.parametrize(
    ("fmt", "mode", "save"),
    [
        ("PNG", "RGB", {}),
        ("PNG", "RGBA", {}),
        ("PNG", "L", {}),
        ("PNG", "P", {"transparency": 0}),
        ("WEBP", "RGB", {"quality": 80}),
        ("GIF", "P", {}),
        ("JPEG", "CMYK", {}),
    ],
)
def test_other_inputs_render(fmt: str, mode: str, save: dict[str, object]) -> None:
    data = template((320, 240), fmt, mode, **save)
    out = render(data, CAPTIONS)
    result = decode(out.data)
    assert (result.format, result.mode, result.size) == ("JPEG", "RGB", (320, 240))
    assert all(b["lines"] for b in out.report["boxes"])


def test_transparency_is_flattened_over_white() -> None:
    clear = Image.new("RGBA", (64, 48), (0, 0, 0, 0))
    buf = io.BytesIO()
    clear.save(buf, "PNG")
    out = decode(render(buf.getvalue(), RenderSpec(boxes=())).data).convert("L")
    assert out.getextrema()[0] > 245


def test_16_bit_grey_png_is_scaled_not_clipped() -> None:
    grey = Image.new("I;16", (64, 48), 32768)
    buf = io.BytesIO()
    grey.save(buf, "PNG")
    out = decode(render(buf.getvalue(), RenderSpec(boxes=())).data).convert("L")
    assert 120 <= out.getpixel((32, 24)) <= 136  # type: ignore[operator]


def test_rgb_icc_profile_is_kept() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (1, 2, 3)).save(buf, "JPEG", icc_profile=b"memeforge-test-icc")
    out = decode(render(buf.getvalue(), CAPTIONS).data)
    assert out.info.get("icc_profile") == b"memeforge-test-icc"


def test_gif_first_frame_is_used() -> None:
    frames = [Image.new("RGB", (64, 48), c) for c in ((250, 0, 0), (0, 0, 250))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100)
    out = decode(render(buf.getvalue(), RenderSpec(boxes=())).data)
    pixel = out.getpixel((32, 24))
    assert isinstance(pixel, tuple)
    assert pixel[0] > 200
    assert pixel[2] < 50


def test_exif_orientation_is_applied() -> None:
    image = Image.new("RGB", (80, 40), (10, 200, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    buf = io.BytesIO()
    image.save(buf, "JPEG", exif=exif.tobytes())
    out = render(buf.getvalue(), RenderSpec(boxes=()))
    assert (out.width, out.height) == (40, 80)


def test_corrupt_bytes_raise_corrupt_image() -> None:
    with pytest.raises(CorruptImage) as err:
        render(b"\x00\x01garbage" * 50, CAPTIONS)
    assert err.value.reason == "corrupt_image"
    assert isinstance(err.value, RenderError)


def test_truncated_jpeg_raises_corrupt_image(jpeg: bytes) -> None:
    with pytest.raises(CorruptImage):
        render(jpeg[: len(jpeg) // 2], CAPTIONS)


def test_text_file_is_rejected() -> None:
    with pytest.raises((CorruptImage, UnsupportedImage)):
        render(b"hello, this is not an image\n" * 20, CAPTIONS)


def test_unsupported_format_is_named() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32)).save(buf, "BMP")
    with pytest.raises(UnsupportedImage) as err:
        render(buf.getvalue(), CAPTIONS)
    assert err.value.reason == "unsupported_format"


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR claims width x height (the pixels are never there)."""
    small = io.BytesIO()
    Image.new("RGB", (1, 1)).save(small, "PNG")
    data = bytearray(small.getvalue())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr : ihdr + 17]))
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", crc)
    return bytes(data)


def test_decompression_bomb_header_is_rejected_before_decoding() -> None:
    with pytest.raises(ImageTooLarge) as err:
        render(_png_claiming(100_000, 100_000), CAPTIONS)
    assert err.value.reason == "image_too_large"


def test_max_source_pixels_is_enforced(jpeg: bytes) -> None:
    """docs/architecture.md "Limits": source pixels at engine decode."""
    with pytest.raises(ImageTooLarge):
        render(jpeg, CAPTIONS, max_source_pixels=W * H - 1)
    assert render(jpeg, CAPTIONS, max_source_pixels=W * H).width == W


def test_huge_caption_is_truncated_not_crashing(jpeg: bytes) -> None:
    # The longest captions allowed, in boxes too small for them even at min_font_size.
    text = ("lorem ipsum dolor sit amet " * 400)[:MAX_CAPTION_CHARS]
    small = {"x": 0.0, "width": 1.0, "height": 0.05}
    spec = RenderSpec(
        boxes=(
            TextBox(text=text, y=0.0, **small),
            TextBox(text="x" * MAX_CAPTION_CHARS, y=0.9, **small),
        )
    )
    out = render(jpeg, spec)
    assert [b["truncated"] for b in out.report["boxes"]] == [True, True]
    assert all(b["font_size"] == 10 for b in out.report["boxes"])
    assert all(b["lines"][-1].endswith("\u2026") for b in out.report["boxes"])
    assert decode(out.data).size == (W, H)


def test_box_outside_the_image_is_clipped(jpeg: bytes) -> None:
    spec = RenderSpec(boxes=(TextBox(text="edge", x=0.9, y=0.9, width=1.0, height=1.0),))
    out = render(jpeg, spec)
    assert out.report["boxes"][0]["lines"] == ["EDGE"]


def test_warm_up_rasterises_the_caption_font() -> None:
    from memeforge_renderer.engine import GLYPHS

    GLYPHS.clear()
    warm_up()
    assert len(GLYPHS) > 0


def test_pillow_build_reports_simd() -> None:
    build = pillow_build()
    assert build["distribution"] == "pillow-simd"
    assert build["simd"] is True
    assert build["version"]
    assert build["features"]["freetype2"]["available"]
    assert build["features"]["jpg"]["available"]


# --------------------------------------------------------------------------- the model


def test_spliced_jpeg_is_byte_identical_to_a_full_encode(jpeg: bytes) -> None:
    fast = render(jpeg, CAPTIONS)
    full = render(jpeg, CAPTIONS, splice=False)
    assert fast.data == full.data


@pytest.mark.parametrize(("mode", "quality", "size"), [("RGB", 85, (W, H)), ("RGBX", 60, (33, 17))])
def test_jpeg_bytes_are_a_saves_bytes(mode: str, quality: int, size: tuple[int, int]) -> None:
    """The encoder called straight gets the settings JpegImagePlugin gives it (a Pillow
    upgrade that changed them would fail here, not move the output)."""
    image = decode(template(size)).convert(mode)
    saved = io.BytesIO()
    image.save(saved, "JPEG", **jpeg_options(quality))
    assert jpeg_bytes(image, quality) == saved.getvalue()


@pytest.mark.parametrize("height", [600, 601, 615, 17])
def test_splicing_handles_partial_last_rows(height: int) -> None:
    data = template((W, height))
    spec = RenderSpec(boxes=(TextBox(text="edge", x=0.0, y=0.5, width=1.0, height=0.5),))
    assert render(data, spec).data == render(data, spec, splice=False).data


@pytest.mark.parametrize(("fmt", "pil"), [("png", "PNG"), ("webp", "WEBP"), ("jpeg", "JPEG")])
def test_output_formats(jpeg: bytes, fmt: str, pil: str) -> None:
    out = render(jpeg, CAPTIONS.model_copy(update={"format": fmt}))
    assert out.content_type == f"image/{fmt}"
    assert decode(out.data).format == pil
    assert out.report["format"] == fmt


def test_max_side_keeps_the_aspect_and_never_enlarges(jpeg: bytes) -> None:
    half = render(jpeg, CAPTIONS.model_copy(update={"max_side": 400}))
    assert (half.width, half.height) == (400, 300)
    assert decode(half.data).size == (400, 300)
    same = render(jpeg, CAPTIONS.model_copy(update={"max_side": 4000}))
    assert (same.width, same.height) == (W, H)


def test_large_jpeg_is_decoded_in_draft_mode_and_still_right() -> None:
    big = template((1600, 1200), quality=90)
    out = render(big, CAPTIONS.model_copy(update={"max_side": 400}))
    assert (out.width, out.height) == (400, 300)
    pixel = decode(out.data).convert("RGB").getpixel((200, 150))  # the red ellipse
    assert isinstance(pixel, tuple)
    assert pixel[0] > 150
    assert pixel[2] < 100


def test_thumbnail(jpeg: bytes) -> None:
    out = render(jpeg, CAPTIONS.model_copy(update={"thumbnail_side": 200}))
    assert out.thumbnail is not None
    assert decode(out.thumbnail).size == (200, 150)
    assert out.report["thumbnail"] == [200, 150, len(out.thumbnail)]


def test_colours_alignment_and_no_outline(jpeg: bytes) -> None:
    box = TextBox(
        text="left",
        x=0.0,
        y=0.0,
        width=1.0,
        height=0.3,
        align="left",
        color="#ff0000",
        outline_width=0,
        max_font_size=100,
    )
    out = decode(render(jpeg, RenderSpec(boxes=(box,))).data).convert("RGB")
    band = out.crop((0, 0, W, int(H * 0.24)))
    red = Image.new("RGB", band.size, (255, 0, 0))
    close = ImageChops.difference(band, red).convert("L").point(lambda v: 255 if v < 25 else 0)
    bbox = close.getbbox()
    assert bbox is not None
    assert bbox[0] < 10  # left aligned
    assert bbox[2] < W // 2


def test_rotated_box_stays_inside(jpeg: bytes) -> None:
    box = TextBox(text="tilted text", x=0.2, y=0.2, width=0.6, height=0.6, rotation=30)
    source = decode(jpeg).convert("RGB")
    out = decode(render(jpeg, RenderSpec(boxes=(box,))).data).convert("RGB")
    inside = (int(W * 0.2), int(H * 0.2), int(W * 0.8), int(H * 0.8))
    assert mean_diff(source, out, inside) > 5
    for outside in ((0, 0, W, int(H * 0.18)), (0, int(H * 0.82), W, H)):
        assert mean_diff(source, out, outside) < 1.5


# --------------------------------------------------------------------------- caching


def test_template_cache_by_key_and_etag(jpeg: bytes) -> None:
    TEMPLATES.clear()
    with pytest.raises(TemplateNotCached):
        render(None, CAPTIONS, template_key="templates/x", etag='"1"')
    first = render(jpeg, CAPTIONS, template_key="templates/x", etag='"1"')
    assert first.report["timings_ms"]["decode"] > 0
    hit = render(None, CAPTIONS, template_key="templates/x", etag='"1"')
    assert hit.report["timings_ms"]["decode"] == 0
    assert hit.data == first.data
    # a new ETag is a new template: never served from the old entry
    with pytest.raises(TemplateNotCached):
        render(None, CAPTIONS, template_key="templates/x", etag='"2"')
    other = template((W, H), quality=60)
    changed = render(other, CAPTIONS, template_key="templates/x", etag='"2"')
    assert changed.data != first.data


def test_cached_template_still_obeys_the_pixel_limit(jpeg: bytes) -> None:
    render(jpeg, CAPTIONS, template_key="templates/limit", etag="e")
    with pytest.raises(ImageTooLarge):
        render(None, CAPTIONS, template_key="templates/limit", etag="e", max_source_pixels=100)


def test_template_cache_is_bounded_by_bytes() -> None:
    """docs/architecture.md "Limits": template bytes cache bounded by bytes."""
    from memeforge_renderer.engine.cache import DecodedTemplateCache, Template

    cache = DecodedTemplateCache(max_bytes=3 * 100 * 100 * 3 + 4000)
    for i in range(10):
        img = Image.new("RGB", (100, 100))
        cache.put((f"k{i}", "e", 0), Template(img, None, "PNG", (100, 100)))
    assert len(cache) == 3
    assert cache.size_bytes <= cache.max_bytes
    assert cache.get(("k9", "e", 0)) is not None
    assert cache.get(("k0", "e", 0)) is None


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "text",
    [
        "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645",  # Arabic
        "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd",  # Hebrew
        "when the tests pass \U0001f389\U0001f525 \U0001f468\u200d\U0001f469\u200d\U0001f467",
        "\u6211\u4eec\u4e00\u8d77\u53bb\u5403\u996d\u5427 \u3042\u308a\u304c\u3068\u3046",
        "mixed \u0645\u0631\u062d\u0628\u0627 and english",
    ],
)
def test_rtl_emoji_and_cjk_captions_render_with_real_glyphs(jpeg: bytes, text: str) -> None:
    out = render(jpeg, RenderSpec(boxes=classic_boxes(text, "")))
    (box,) = out.report["boxes"]
    assert box["lines"]
    assert box["missing_glyphs"] == 0
    assert not box["truncated"]
    source = decode(jpeg).convert("RGB")
    assert mean_diff(source, decode(out.data), (0, 0, W, int(H * 0.24))) > 5


def test_unknown_characters_are_counted_not_fatal(jpeg: bytes) -> None:
    out = render(jpeg, RenderSpec(boxes=classic_boxes("\U00010900\U00010901 ok", "")))
    assert out.report["boxes"][0]["missing_glyphs"] == 2


def test_empty_caption_renders_the_template(jpeg: bytes) -> None:
    spec = RenderSpec(boxes=(TextBox(text="", x=0, y=0, width=1, height=1),))
    out = render(jpeg, spec)
    assert out.report["boxes"][0] == {
        "font_size": 0,
        "lines": [],
        "truncated": False,
        "missing_glyphs": 0,
    }


def test_all_control_characters_caption(jpeg: bytes) -> None:
    out = render(jpeg, RenderSpec(boxes=classic_boxes("\x00\x01\x02 hi \x7f\u200b", "")))
    # Control characters are dropped; the zero-width space is kept (it draws nothing).
    assert out.report["boxes"][0]["lines"] == ["HI \u200b"]


def test_empty_bytes_are_corrupt() -> None:
    with pytest.raises(CorruptImage):
        render(b"", CAPTIONS)


@pytest.mark.parametrize("text", PATHOLOGICAL)
def test_pathological_captions_at_the_limit_render(jpeg: bytes, text: str) -> None:
    """How fast is measured by bench/render.py (``pathological_max_ms``), not here."""
    text = text[:MAX_CAPTION_CHARS]
    spec = RenderSpec(boxes=(TextBox(text=text, x=0, y=0, width=0.5, height=0.25),))
    out = render(jpeg, spec)
    assert decode(out.data).size == (W, H)
    (box,) = out.report["boxes"]
    assert sum(len(line) for line in box["lines"]) <= len(text)


def test_splice_keeps_the_icc_profile_and_the_bytes() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (320, 240), (1, 2, 3)).save(buf, "JPEG", icc_profile=b"memeforge-icc")
    fast = render(buf.getvalue(), CAPTIONS)
    assert fast.data == render(buf.getvalue(), CAPTIONS, splice=False).data
    assert decode(fast.data).info.get("icc_profile") == b"memeforge-icc"

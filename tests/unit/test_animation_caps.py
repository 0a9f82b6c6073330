"""Animated templates: facts read from the file's blocks, and the caps on them, at upload
(memeforge_api.images) and in the engine (for a crafted render job)."""

from __future__ import annotations

import pytest
from memeforge_api.images import InvalidImage, inspect_image
from memeforge_common.animation import AnimationLimits, animation_facts
from memeforge_common.models import RenderSpec, classic_boxes
from memeforge_renderer import engine

from tests.support.images import animated, gradient

pytestmark = pytest.mark.unit

GIF_SPEC = RenderSpec(boxes=classic_boxes("top", "bottom"), format="gif")


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_frames_duration_and_loop_come_from_the_blocks(fmt: str) -> None:
    data = animated(fmt, count=4, durations=[50, 60, 70, 80], loop=3)
    facts = animation_facts(data, max_frames=300)
    assert facts is not None
    assert (facts.frames, facts.duration_ms, facts.loop) == (4, 260, 3)
    assert (facts.width, facts.height) == (96, 72)


def test_a_gif_without_a_loop_block_plays_once_and_a_still_has_no_facts() -> None:
    facts = animation_facts(animated("GIF", count=3, loop=None), max_frames=300)
    assert facts is not None
    assert facts.loop is None
    assert animation_facts(gradient(32, 24, "GIF"), max_frames=300) is None
    assert animation_facts(gradient(32, 24, "WEBP"), max_frames=300) is None
    assert animation_facts(gradient(32, 24, "JPEG"), max_frames=300) is None


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_the_upload_records_the_animation(fmt: str) -> None:
    facts = inspect_image(animated(fmt, count=6, durations=100), max_pixels=10**7)
    assert facts.animation is not None
    assert (facts.animation.frames, facts.animation.duration_ms) == (6, 600)


CAPS = [
    (AnimationLimits(max_frames=5), "too-many-frames"),
    (AnimationLimits(max_duration_ms=500), "animation-too-long"),
    (AnimationLimits(max_pixels=96 * 72 * 5), "image-too-large"),
]


@pytest.mark.parametrize(("caps", "code"), CAPS)
@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_uploads_over_a_cap_are_refused_with_its_code(
    fmt: str, caps: AnimationLimits, code: str
) -> None:
    data = animated(fmt, count=6, durations=100)  # 6 frames, 600 ms, 96x72x6 pixels
    with pytest.raises(InvalidImage) as err:
        inspect_image(data, max_pixels=10**7, caps=caps)
    assert err.value.code == code


@pytest.mark.parametrize(("caps", "code"), CAPS)
@pytest.mark.parametrize("fmt", ["gif", "webp"])
def test_the_engine_refuses_the_same_caps_before_decoding(
    fmt: str, caps: AnimationLimits, code: str
) -> None:
    data = animated("GIF", count=6, durations=100)
    spec = GIF_SPEC.model_copy(update={"format": fmt})
    with pytest.raises(engine.AnimationRefused) as err:
        engine.render(data, spec, animation_limits=caps)
    assert err.value.reason == code.replace("-", "_")


def test_a_frame_bomb_stops_counting_at_the_cap() -> None:
    """A million one-pixel frames cost one pass over the bytes, never a decode."""
    frame = (
        b"\x21\xf9\x04\x00\x01\x00\x00\x00"  # graphic control: 10 ms
        b"\x2c\x00\x00\x00\x00\x01\x00\x01\x00\x00"  # a 1x1 frame
        b"\x02\x02\x44\x01\x00"  # its LZW data
    )
    header = b"GIF89a\x01\x00\x01\x00\x80\x00\x00" + b"\x00\x00\x00\xff\xff\xff"
    bomb = header + frame * 1_000_000 + b"\x3b"
    with pytest.raises(InvalidImage) as err:
        inspect_image(bomb, max_pixels=10**7)
    assert err.value.code == "too-many-frames"


def test_an_output_over_the_byte_cap_fails_with_a_reason() -> None:
    data = animated("GIF", count=6)
    size = engine.render(data, GIF_SPEC).report["bytes"]
    engine.ANIMATIONS.clear()
    for fmt in ("gif", "webp"):
        spec = GIF_SPEC.model_copy(update={"format": fmt})
        with pytest.raises(engine.OutputBytesTooLarge):
            engine.render(data, spec, animation_limits=AnimationLimits(max_output_bytes=size // 2))

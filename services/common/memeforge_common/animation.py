"""What an animated GIF or WebP holds (frames, total duration, loop), read from its block
structure without decoding a pixel, and the caps an animation must stay within.

The api checks these at upload and the renderer again before it decodes any frame (a
crafted message may name a template stored under other limits), so both refuse a
decompression bomb hidden in frames the same way (invariant 11: one home per rule).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from memeforge_common import limits

if TYPE_CHECKING:
    from memeforge_common.settings import Settings


@dataclass(frozen=True)
class AnimationFacts:
    frames: int
    duration_ms: int
    loop: int | None
    """Times to play (0 = forever), as the file says; None: no loop block (plays once)."""
    width: int
    height: int


@dataclass(frozen=True)
class AnimationLimits:
    """Defaults in limits.py; the deployed values are settings (``from_settings``)."""

    max_frames: int = limits.MAX_FRAMES
    max_duration_ms: int = limits.MAX_ANIMATION_MS
    max_pixels: int = limits.MAX_ANIMATION_PIXELS
    max_output_bytes: int = limits.MAX_OUTPUT_BYTES

    @classmethod
    def from_settings(cls, settings: Settings) -> AnimationLimits:
        return cls(
            max_frames=settings.max_frames,
            max_duration_ms=settings.max_animation_ms,
            max_pixels=settings.max_animation_pixels,
            max_output_bytes=settings.max_output_bytes,
        )


class AnimationRefused(ValueError):
    """An animation over a cap; ``code`` is the api's problem code, ``reason`` the
    FAILED item's."""

    code = "animation-refused"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    @property
    def reason(self) -> str:
        return self.code.replace("-", "_")


class TooManyFrames(AnimationRefused):
    code = "too-many-frames"


class AnimationTooLong(AnimationRefused):
    code = "animation-too-long"


class AnimationTooLarge(AnimationRefused):
    """width x height x frames over the cap: the pixels every frame decodes to."""

    code = "image-too-large"


def animation_facts(data: bytes, *, max_frames: int) -> AnimationFacts | None:
    """The facts of an animated GIF or WebP; None for a still (or another format).

    Counting stops past ``max_frames`` (TooManyFrames), so a file of a million tiny
    frames costs no more than reading it once. A truncated file counts what it has;
    decoding it later fails as corrupt.
    """
    if data[:6] in (b"GIF87a", b"GIF89a"):
        facts = _gif(data, max_frames)
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        facts = _webp(data, max_frames)
    else:
        return None
    return facts if facts is not None and facts.frames > 1 else None


def check_animation(facts: AnimationFacts, caps: AnimationLimits) -> None:
    """Raise the AnimationRefused that the first cap broken calls for."""
    if facts.frames > caps.max_frames:
        raise TooManyFrames(f"more than {caps.max_frames} frames")
    if facts.duration_ms > caps.max_duration_ms:
        raise AnimationTooLong(
            f"{facts.duration_ms} ms of animation (limit {caps.max_duration_ms} ms)"
        )
    pixels = facts.width * facts.height * facts.frames
    if pixels > caps.max_pixels:
        raise AnimationTooLarge(
            f"{facts.width}x{facts.height} x {facts.frames} frames is {pixels} pixels"
            f" (limit {caps.max_pixels})"
        )


def _too_many(max_frames: int) -> TooManyFrames:
    return TooManyFrames(f"more than {max_frames} frames")


def _gif(data: bytes, max_frames: int) -> AnimationFacts | None:
    n = len(data)
    if n < 13:
        return None
    width = int.from_bytes(data[6:8], "little")
    height = int.from_bytes(data[8:10], "little")
    packed = data[10]
    pos = 13 + (3 << ((packed & 7) + 1) if packed & 0x80 else 0)
    frames = duration_cs = delay = 0
    loop: int | None = None
    while pos < n:
        block = data[pos]
        if block == 0x21 and pos + 2 <= n:  # extension: label, then sub-blocks
            label = data[pos + 1]
            pos += 2
            if label == 0xF9 and pos + 4 < n:  # graphic control: this frame's delay
                delay = int.from_bytes(data[pos + 2 : pos + 4], "little")
            elif label == 0xFF and _is_loop_block(data, pos):
                loop = int.from_bytes(data[pos + 14 : pos + 16], "little")
            pos = _skip_sub_blocks(data, pos)
        elif block == 0x2C and pos + 10 <= n:  # image descriptor: one frame
            frames += 1
            if frames > max_frames:
                raise _too_many(max_frames)
            duration_cs += delay
            delay = 0
            local = data[pos + 9]
            pos += 10 + (3 << ((local & 7) + 1) if local & 0x80 else 0) + 1  # + LZW size
            pos = _skip_sub_blocks(data, pos)
        else:  # the trailer (0x3B), or anything a decoder would stop at too
            break
    return AnimationFacts(frames, duration_cs * 10, loop, width, height)


def _is_loop_block(data: bytes, pos: int) -> bool:
    """An application extension naming the loop count (Netscape's, or its twin)."""
    if pos + 17 > len(data) or data[pos + 13] != 1:
        return False
    return data[pos + 1 : pos + 12] in (b"NETSCAPE2.0", b"ANIMEXTS1.0")


def _skip_sub_blocks(data: bytes, pos: int) -> int:
    n = len(data)
    while pos < n:
        size = data[pos]
        pos += 1 + size
        if size == 0:
            break
    return pos


def _webp(data: bytes, max_frames: int) -> AnimationFacts | None:
    pos, n = 12, len(data)
    width = height = frames = duration = 0
    loop: int | None = None
    animated = False
    while pos + 8 <= n:
        fourcc = data[pos : pos + 4]
        size = int.from_bytes(data[pos + 4 : pos + 8], "little")
        body = data[pos + 8 : pos + 8 + min(size, 16)]
        if fourcc == b"VP8X" and len(body) >= 10:
            animated = bool(body[0] & 0x02)
            width = 1 + int.from_bytes(body[4:7], "little")
            height = 1 + int.from_bytes(body[7:10], "little")
        elif fourcc == b"ANIM" and len(body) >= 6:
            loop = int.from_bytes(body[4:6], "little")
        elif fourcc == b"ANMF" and len(body) >= 15:
            frames += 1
            if frames > max_frames:
                raise _too_many(max_frames)
            duration += int.from_bytes(body[12:15], "little")
        elif fourcc in (b"VP8 ", b"VP8L") and not animated:
            return None  # a still WebP
        pos += 8 + size + (size & 1)
    if not animated:
        return None
    return AnimationFacts(frames, duration, loop, width, height)

"""Typed render errors: each carries a machine-readable ``reason`` for the meme's Failure."""

from __future__ import annotations


class RenderError(Exception):
    """Base of every error the engine raises on bad input; ``str(err)`` is the detail."""

    reason: str = "render_error"

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail)
        self.detail = detail


class TemplateNotCached(LookupError):
    """``render(None, ...)`` for a template this process has not cached: send the bytes."""


class CorruptImage(RenderError):
    """The bytes are not a decodable image (truncated, garbage, broken headers)."""

    reason = "corrupt_image"


class UnsupportedImage(RenderError):
    """A real image, but not one of the accepted formats (JPEG, PNG, WebP, GIF)."""

    reason = "unsupported_format"


class ImageTooLarge(RenderError):
    """More pixels than allowed (decompression bomb guard), judged from the header."""

    reason = "image_too_large"


class OutputTooLarge(RenderError):
    """The output would have more pixels than allowed (ask for a smaller ``max_side``)."""

    reason = "output_too_large"


class TooExpensive(RenderError):
    """The boxes (their area, their rotation) would cost more than one render may."""

    reason = "too_expensive"


class AnimationRefused(RenderError):
    """An animation over a cap (memeforge_common.animation): too many frames, too long,
    or too many pixels over all its frames; ``reason`` says which."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason

    def __reduce__(self) -> tuple[type[AnimationRefused], tuple[str, str]]:
        return (type(self), (self.reason, self.detail))  # back from a pool process intact


class OutputBytesTooLarge(RenderError):
    """The encoded output would be larger than allowed (ask for a smaller ``max_side``)."""

    reason = "output_bytes_too_large"

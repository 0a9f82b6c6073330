"""The pure render engine: template bytes + RenderSpec -> image bytes + layout report."""

from memeforge_common.pillow import pillow_build

from .cache import TEMPLATES, DecodedTemplateCache
from .draw import GLYPHS
from .errors import CorruptImage, ImageTooLarge, RenderError, UnsupportedImage
from .fit import FittedText, fit_caption, fit_text
from .render import RenderOutput, TemplateNotCached, render, warm_up

__all__ = [
    "GLYPHS",
    "TEMPLATES",
    "CorruptImage",
    "DecodedTemplateCache",
    "FittedText",
    "ImageTooLarge",
    "RenderError",
    "RenderOutput",
    "TemplateNotCached",
    "UnsupportedImage",
    "configure",
    "fit_caption",
    "fit_text",
    "pillow_build",
    "render",
    "warm_up",
]


def configure(
    *, template_cache_bytes: int | None = None, glyph_cache_bytes: int | None = None
) -> None:
    """Bound this process's caches (the pool initializer may call it before warm_up)."""
    if template_cache_bytes is not None:
        TEMPLATES.max_bytes = template_cache_bytes
    if glyph_cache_bytes is not None:
        GLYPHS.max_bytes = glyph_cache_bytes

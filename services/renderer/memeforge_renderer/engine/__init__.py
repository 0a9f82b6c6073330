"""The pure render engine: template bytes + RenderSpec -> image bytes + layout report."""

from typing import Any

from memeforge_common.pillow import pillow_build

from .animated import ANIMATIONS
from .cache import TEMPLATES, DecodedTemplateCache
from .draw import GLYPHS
from .errors import (
    AnimationRefused,
    CorruptImage,
    ImageTooLarge,
    OutputBytesTooLarge,
    OutputTooLarge,
    RenderError,
    TemplateNotCached,
    TooExpensive,
    UnsupportedImage,
)
from .fit import GEOMETRY, SIZES, FittedText, fit_caption, fit_text
from .lru import ByteLRU
from .output import RenderOutput
from .render import render, warm_up
from .text import TOKENS
from .typeface import FONTS, faces

__all__ = [
    "ANIMATIONS",
    "GLYPHS",
    "TEMPLATES",
    "AnimationRefused",
    "CorruptImage",
    "DecodedTemplateCache",
    "FittedText",
    "ImageTooLarge",
    "OutputBytesTooLarge",
    "OutputTooLarge",
    "RenderError",
    "RenderOutput",
    "TemplateNotCached",
    "TooExpensive",
    "UnsupportedImage",
    "cache_budgets",
    "cache_sizes",
    "configure",
    "fit_caption",
    "fit_text",
    "pillow_build",
    "render",
    "warm_up",
]


def _caches() -> dict[str, ByteLRU[Any, Any]]:
    """Every cache of this process, by the name of its budget."""
    found: dict[str, ByteLRU[Any, Any]] = {
        "template": TEMPLATES.lru,
        "animation": ANIMATIONS,
        "glyph": GLYPHS.lru,
        "font": FONTS,
        "token": TOKENS,
        "fit_sizes": SIZES,
        "fit_geometry": GEOMETRY,
    }
    for face in faces().values():
        found[f"kern_{face.name}"] = face.kerns
    return found


def configure(
    *,
    template_cache_bytes: int | None = None,
    animation_cache_bytes: int | None = None,
    glyph_cache_bytes: int | None = None,
    font_cache_bytes: int | None = None,
    token_cache_bytes: int | None = None,
    kern_cache_bytes: int | None = None,
    fit_cache_bytes: int | None = None,
) -> None:
    """Bound this process's caches (the pool initializer may call it before warm_up)."""
    budgets = {
        "template": template_cache_bytes,
        "animation": animation_cache_bytes,
        "glyph": glyph_cache_bytes,
        "font": font_cache_bytes,
        "token": token_cache_bytes,
        "fit": fit_cache_bytes,
        "kern": kern_cache_bytes,
    }
    for name, cache in _caches().items():
        budget = budgets[name.split("_")[0]]
        if budget is not None:
            cache.set_budget(budget)


def cache_budgets() -> dict[str, int]:
    """Each cache's byte budget (their sum bounds what the caches may hold)."""
    return {name: cache.max_bytes for name, cache in _caches().items()}


def cache_sizes() -> dict[str, int]:
    """Each cache's estimated bytes held now."""
    return {name: cache.size_bytes for name, cache in _caches().items()}

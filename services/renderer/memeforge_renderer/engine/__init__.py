"""The pure render engine: template bytes + RenderSpec -> image bytes + layout report."""

from .build import pillow_build
from .errors import CorruptImage, ImageTooLarge, RenderError, UnsupportedImage
from .fit import FittedText, fit_text
from .render import RenderOutput, render, warm_up

__all__ = [
    "CorruptImage",
    "FittedText",
    "ImageTooLarge",
    "RenderError",
    "RenderOutput",
    "UnsupportedImage",
    "fit_text",
    "pillow_build",
    "render",
    "warm_up",
]

"""Bundled fonts (all SIL OFL 1.1), fallback chains, and metrics measured once per face.

Every bundled font is de-hinted, so advances and ink boxes scale linearly with the size:
they are measured once at ``REF_SIZE`` (in em, i.e. divided by it) and multiplied by the
size in px afterwards. Fitting a caption is then arithmetic, with no FreeType call per
size tried. Which face draws a character comes from ``fonts/coverage.json`` (written by
``scripts/build_fallback_fonts.py``), never from guessing at .notdef glyphs.
"""

from __future__ import annotations

import json
import os
from bisect import bisect_right
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from memeforge_common.limits import FONT_CACHE_BYTES, KERN_CACHE_BYTES
from PIL import ImageFont

from .lru import ByteLRU

FONTS_DIR = Path(__file__).resolve().with_name("fonts")
FONT_PATH = str(FONTS_DIR / "Anton-Regular.ttf")
REF_SIZE = 1000
KERN_ENTRY_BYTES = 160
"""Estimated memory of one cached kerning pair (key string, float, LRU node), measured
with tracemalloc on astral-plane pairs (the largest keys)."""
ELLIPSIS = "\u2026"


@dataclass(eq=False)
class Face:
    """One font file and what it is used for."""

    name: str
    path: str
    shaped: bool
    """Drawn by runs through raqm (RTL joining, emoji sequences) instead of glyph by glyph."""
    rtl: bool = False
    starts: list[int] = field(default_factory=list, repr=False)
    ends: list[int] = field(default_factory=list, repr=False)
    advances: dict[str, float] = field(default_factory=dict, repr=False)
    boxes: dict[str, tuple[float, float, float, float]] = field(default_factory=dict, repr=False)
    kerns: ByteLRU[str, float] = field(
        default_factory=lambda: ByteLRU(KERN_CACHE_BYTES), repr=False
    )
    """Random text makes new pairs without end, so pairs are an LRU with a byte budget.
    Single characters (advances, boxes) are bounded by the face's coverage."""

    def covers(self, cp: int) -> bool:
        i = bisect_right(self.starts, cp) - 1
        return i >= 0 and cp <= self.ends[i]

    @property
    def ref(self) -> ImageFont.FreeTypeFont:
        return load_font(self.path, REF_SIZE)

    def advance(self, ch: str) -> float:
        """Advance width of one character, in em (kept only for characters it covers:
        those no face has must not fill the cache)."""
        adv = self.advances.get(ch)
        if adv is None:
            adv = self.ref.getlength(ch) / REF_SIZE
            if self.covers(ord(ch)):
                self.advances[ch] = adv
        return adv

    def box(self, ch: str) -> tuple[float, float, float, float]:
        """Ink box of one character from its pen position on the baseline, in em
        (left, top, right, bottom; top is negative above the baseline)."""
        box = self.boxes.get(ch)
        if box is None:
            if ch.isspace():
                box = (0.0, 0.0, 0.0, 0.0)
            else:
                x0, t, r, b = self.ref.getbbox(ch, anchor="ls")
                box = (x0 / REF_SIZE, t / REF_SIZE, r / REF_SIZE, b / REF_SIZE)
            if self.covers(ord(ch)):
                self.boxes[ch] = box
        return box

    def kern(self, pair: str) -> float:
        """Kerning between two characters, in em (usually 0)."""
        k = self.kerns.get(pair)
        if k is None:
            ref = self.ref
            k = (ref.getlength(pair) / REF_SIZE) - self.advance(pair[0]) - self.advance(pair[1])
            k = 0.0 if abs(k) < 1e-6 else k
            if self.covers(ord(pair[0])) and self.covers(ord(pair[1])):
                self.kerns.put(pair, k, KERN_ENTRY_BYTES)
        return k

    def run_metrics(self, text: str, rtl: bool) -> tuple[float, float, float, float, float]:
        """(advance, left, top, right, bottom) of a shaped run, in em."""
        ref = self.ref
        direction = "rtl" if rtl else "ltr"
        adv = ref.getlength(text, direction=direction) / REF_SIZE
        x0, t, r, b = ref.getbbox(text, anchor="ls", direction=direction)
        return adv, x0 / REF_SIZE, t / REF_SIZE, r / REF_SIZE, b / REF_SIZE


FONTS: ByteLRU[tuple[str, int], ImageFont.FreeTypeFont] = ByteLRU(FONT_CACHE_BYTES)
"""Loaded faces by (file, size): each holds its own FreeType face, so a CJK one costs
over a megabyte and the random sizes of many boxes add up."""
FONT_OVERHEAD_BYTES = 64 * 1024
"""A loaded face is estimated at its file's size plus this: above what RSS shows for
each bundled font (from 54 KB for Hebrew to 1.1 MB for the CJK subset)."""


def load_font(path: str, size: int) -> ImageFont.FreeTypeFont:
    """The face at ``path`` at ``size`` px, loaded once per (path, size) while cached."""
    key = (path, size)
    font = FONTS.get(key)
    if font is None:
        font = ImageFont.truetype(path, size)
        FONTS.put(key, font, _file_bytes(path) + FONT_OVERHEAD_BYTES)
    return font


@lru_cache(maxsize=16)  # one entry per bundled font file
def _file_bytes(path: str) -> int:
    return os.path.getsize(path)


_FACE_FILES = {
    # name: (file, shaped, rtl)
    "anton": ("Anton-Regular.ttf", False, False),
    "noto-sans": ("NotoSans-ExtraBold.ttf", False, False),
    "noto-sans-arabic": ("NotoSansArabic-Bold.ttf", True, True),
    "noto-sans-hebrew": ("NotoSansHebrew-Bold.ttf", True, True),
    "noto-sans-sc": ("NotoSansSC-Bold-subset.ttf", False, False),
    "noto-emoji": ("NotoEmoji-Regular.ttf", True, False),
}
_FALLBACKS = ("noto-sans", "noto-sans-arabic", "noto-sans-hebrew", "noto-sans-sc", "noto-emoji")


@lru_cache(maxsize=1)
def faces() -> dict[str, Face]:
    coverage = json.loads((FONTS_DIR / "coverage.json").read_text())
    found: dict[str, Face] = {}
    for name, (file, shaped, rtl) in _FACE_FILES.items():
        ranges = coverage[file]["ranges"]
        found[name] = Face(
            name=name,
            path=str(FONTS_DIR / file),
            shaped=shaped,
            rtl=rtl,
            starts=[r[0] for r in ranges],
            ends=[r[1] for r in ranges],
        )
    return found


@lru_cache(maxsize=8)
def chain(primary: str) -> tuple[Face, ...]:
    """The box's font first, then the fallbacks in order (each face once)."""
    table = faces()
    names = [primary, *(n for n in _FALLBACKS if n != primary)]
    return tuple(table[n] for n in names)

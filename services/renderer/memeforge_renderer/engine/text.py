"""Caption text -> tokens (breakable units) -> runs of one face, with their metrics in em.

A token is a word, or a single CJK character (lines may break between those). Each
token is split into runs: consecutive characters drawn by the same face of the box's
fallback chain. Runs of the plain faces (Anton, Noto Sans, CJK) are drawn glyph by glyph
from cached masks; runs that need shaping (Arabic, Hebrew, emoji sequences, combining
marks) go through raqm as a whole. Token metrics are cached: real captions repeat words.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from memeforge_common.limits import TOKEN_CACHE_BYTES

from .lru import ByteLRU
from .typeface import Face, chain

METRICS_BYTES = 600
"""Estimated memory of one cached token's Metrics, its key and LRU node, plus RUN_BYTES
per run and CHAR_BYTES per character (the text is held twice: metrics and runs).
Measured with tracemalloc on random private-use and astral-plane words."""
RUN_BYTES = 250
CHAR_BYTES = 8


@dataclass(frozen=True, slots=True)
class Run:
    face: Face
    text: str
    shaped: bool
    rtl: bool
    advance: float
    """All metrics in em (multiply by the size in px)."""
    left: float
    top: float
    right: float
    bottom: float


@dataclass(frozen=True, slots=True)
class Metrics:
    text: str
    runs: tuple[Run, ...]
    advance: float
    over_left: float
    """How far ink may reach left of the pen origin (>= 0)."""
    over_right: float
    """How far ink may reach right of the advance (>= 0)."""
    top: float
    """Highest ink, negative above the baseline."""
    bottom: float
    rtl: bool | None
    """Direction of the first strong character; None when it has none."""
    missing: int
    """Characters no bundled face has (drawn as the primary face's .notdef box)."""


@dataclass(frozen=True, slots=True)
class Token:
    metrics: Metrics
    space_before: bool
    cont: bool = False
    """The rest of a word cut into chunks: a line ending before it is filled with a piece."""


def is_attached(ch: str) -> bool:
    """Joins the preceding character's run (marks, joiners, selectors, emoji modifiers)."""
    cp = ord(ch)
    return (
        cp == 0x200D
        or 0xFE00 <= cp <= 0xFE0F
        or 0x1F3FB <= cp <= 0x1F3FF
        or 0xE0020 <= cp <= 0xE007F
        or cp == 0x20E3
        or unicodedata.category(ch) in ("Mn", "Mc", "Me")
    )


ZWJ = "\u200d"
NOTDEF = "\uffff"
"""Drawn in place of any character no face covers: a noncharacter no face has, so it is
the primary face's .notdef box, exactly as the character itself would be. Every missing
character then shares one set of metrics and glyph masks instead of filling the caches."""
MAX_TOKEN_CHARS = 256


def cluster_end(text: str, i: int) -> int:
    """End of the cluster starting at ``i``: marks, selectors, modifiers, and ZWJ with the
    character it joins stay together."""
    n = len(text)
    end = i + 1
    while end < n:
        ch = text[end]
        if ch == ZWJ:
            end = min(n, end + 2)
        elif is_attached(ch):
            end += 1
        else:
            break
    return end


def _is_emoji(cp: int) -> bool:
    return 0x1F000 <= cp <= 0x1FAFF or 0x2600 <= cp <= 0x27BF


def _is_cjk(cp: int) -> bool:
    return (
        0x2E80 <= cp <= 0x9FFF
        or 0xAC00 <= cp <= 0xD7AF
        or 0xF900 <= cp <= 0xFAFF
        or 0xFF00 <= cp <= 0xFF60
        or 0x20000 <= cp <= 0x3FFFF
    )


def strong_rtl(text: str) -> bool | None:
    for ch in text:
        bidi = unicodedata.bidirectional(ch)
        if bidi in ("R", "AL"):
            return True
        if bidi == "L":
            return False
    return None


class Shaper:
    """Splits and measures text for one fallback chain (one per primary font)."""

    def __init__(self, primary: str) -> None:
        self.faces = chain(primary)
        self.primary = self.faces[0]
        self.space = self.primary.advance(" ")
        self._key = self.primary.name

    def ellipsis(self) -> str:
        return "\u2026" if self.primary.covers(0x2026) else "..."

    def measure(self, text: str) -> Metrics:
        key = (self._key, text)
        m = TOKENS.get(key)
        if m is None:
            m = self._measure(text)
            TOKENS.put(key, m, metrics_bytes(m))
        return m

    def tokens(self, paragraph: str) -> list[Token]:
        """Breakable units of one paragraph (no line breaks inside): words, with each CJK
        character and each emoji (with its joiners and modifiers) a unit of its own."""
        out: list[Token] = []
        for word in paragraph.split():
            if word.isascii():  # no CJK or emoji: the word is one token (the usual case)
                self._emit(out, word, True)
                continue
            first = True
            start = i = 0
            n = len(word)
            while i < n:
                cp = ord(word[i])
                if _is_cjk(cp) or _is_emoji(cp):
                    if i > start:
                        first = self._emit(out, word[start:i], first)
                    end = cluster_end(word, i)
                    first = self._emit(out, word[i:end], first)
                    start = i = end
                else:
                    i += 1
            if start < n:
                self._emit(out, word[start:], first)
        return out

    def _emit(self, out: list[Token], text: str, first: bool) -> bool:
        """Append ``text`` as one token, or as chunks if it is very long (a line holds
        only so much; measuring or shaping 10,000 characters at once would be slow)."""
        cont = False
        while len(text) > MAX_TOKEN_CHARS:
            cut = MAX_TOKEN_CHARS
            while cut > 1 and (is_attached(text[cut]) or text[cut - 1] == ZWJ):
                cut -= 1
            out.append(Token(self.measure(text[:cut]), first, cont=cont))
            first, cont = False, True
            text = text[cut:]
        out.append(Token(self.measure(text), first, cont=cont))
        return False

    def _face_of(self, cp: int) -> Face | None:
        for face in self.faces:
            if face.covers(cp):
                return face
        return None

    def _measure(self, text: str) -> Metrics:
        groups: list[tuple[Face, list[str], bool]] = []
        missing = 0
        for ch in text:
            if groups and is_attached(ch):
                groups[-1][1].append(ch)
                if not groups[-1][0].shaped:
                    groups[-1] = (groups[-1][0], groups[-1][1], True)
                continue
            face = self._face_of(ord(ch))
            if face is None:
                missing += 1
                face = self.primary
                ch = NOTDEF
            if groups and groups[-1][0] is face:
                groups[-1][1].append(ch)
            else:
                groups.append((face, [ch], face.shaped))
        runs = tuple(self._run(face, "".join(chars), shaped) for face, chars, shaped in groups)
        advance = sum(r.advance for r in runs)
        return Metrics(
            text=text,
            runs=runs,
            advance=advance,
            over_left=max(0.0, *(-r.left for r in runs)),
            over_right=max(0.0, *(r.right - r.advance for r in runs)),
            top=min(0.0, *(r.top for r in runs)),
            bottom=max(0.0, *(r.bottom for r in runs)),
            rtl=strong_rtl(text),
            missing=missing,
        )

    @staticmethod
    def _run(face: Face, text: str, shaped: bool) -> Run:
        if shaped:
            rtl = face.rtl or bool(strong_rtl(text))
            adv, left, top, right, bottom = face.run_metrics(text, rtl)
            return Run(face, text, True, rtl, adv, left, top, right, bottom)
        pen = 0.0
        top = bottom = 0.0
        left = right = 0.0
        prev = ""
        for i, ch in enumerate(text):
            if prev:
                pen += face.kern(prev + ch)
            x0, t, r, b = face.box(ch)
            if i == 0:
                left = x0
            right = max(right, pen + r)
            top = min(top, t)
            bottom = max(bottom, b)
            pen += face.advance(ch)
            prev = ch
        return Run(face, text, False, False, pen, left, top, right, bottom)


def metrics_bytes(m: Metrics) -> int:
    return METRICS_BYTES + RUN_BYTES * len(m.runs) + CHAR_BYTES * len(m.text)


TOKENS: ByteLRU[tuple[str, str], Metrics] = ByteLRU(TOKEN_CACHE_BYTES)
"""Token metrics of every fallback chain, keyed by (primary face, token)."""

_SHAPERS: dict[str, Shaper] = {}


def shaper(primary: str) -> Shaper:
    found = _SHAPERS.get(primary)
    if found is None:
        found = _SHAPERS[primary] = Shaper(primary)
    return found


def normalise(text: str, case: str) -> str:
    """Line breaks unified, other control characters turned into spaces, case applied."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.isprintable():
        text = "".join(ch if ch == "\n" or unicodedata.category(ch) != "Cc" else " " for ch in text)
    return text.upper() if case == "upper" else text


def ink(text: str) -> str:
    """The characters that must be drawn (no whitespace): what tests compare."""
    return "".join(text.split())

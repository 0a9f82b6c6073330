"""Build the renderer's fallback fonts (all SIL OFL 1.1) from pinned @fontsource packages.

Reproducible steps (run from the repository root)::

    python3 -m venv /tmp/fontvenv
    /tmp/fontvenv/bin/pip install fonttools brotli
    /tmp/fontvenv/bin/python scripts/build_fallback_fonts.py

For each package: ``npm pack NAME@VERSION`` (its sha512 is checked against the pinned
npm ``dist.integrity``), the chosen WOFF2 subsets are decompressed, cut down to the code
points no earlier subset maps, merged with ``fontTools.merge.Merger`` and re-subset with
hinting dropped. ``head.modified`` is kept from the source so the output is the same
on every run. The package ``LICENSE`` is copied next to each font, and
``fonts/coverage.json`` records which code points each font maps (the engine picks a
font per character from it: fontTools is a build tool only, never a runtime dependency).

What is kept, and why (a few MB in all; Noto CJK alone would be ~20 MB):

* ``NotoSans-ExtraBold.ttf``: Latin, Latin-ext, Vietnamese, Greek, Cyrillic (Anton has
  no Greek or Cyrillic); also selectable per box as ``font="noto-sans"``.
* ``NotoSansArabic-Bold.ttf``, ``NotoSansHebrew-Bold.ttf``: right-to-left scripts, shaped
  by raqm (HarfBuzz + FriBiDi).
* ``NotoSansSC-Bold-subset.ttf``: the 3,755 GB 2312 level-1 hanzi (the commonest Chinese
  characters), the 2,965 JIS level-1 kanji, all kana, CJK punctuation and full-width
  forms: 5,661 code points, 1.7 MB (the Google Fonts cut of Noto Sans SC has no hangul;
  Korean would need @fontsource/noto-sans-kr the same way).
* ``NotoEmoji-Regular.ttf``: monochrome outline emoji (they take the caption's colour and
  outline like any letter; colour bitmap emoji do not scale or stroke).
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from fontTools import subset
from fontTools.merge import Merger
from fontTools.ttLib import TTFont

ROOT = Path(__file__).resolve().parent.parent
DEST = ROOT / "services/renderer/memeforge_renderer/engine/fonts"


@dataclass(frozen=True)
class Build:
    output: str
    package: str
    version: str
    integrity: str
    files: tuple[str, ...]
    """WOFF2 file names (without the files/ prefix); glob patterns allowed."""
    licence: str
    codepoints: frozenset[int] | None = None
    """Keep only these (None: everything the subsets map)."""


def _decoded(codec: str, rows: range, cols: range = range(0xA1, 0xFF)) -> set[int]:
    found: set[int] = set()
    for hi in rows:
        for lo in cols:
            try:
                found.update(ord(c) for c in bytes((hi, lo)).decode(codec))
            except UnicodeDecodeError:
                continue
    return found


def cjk_codepoints() -> frozenset[int]:
    common = _decoded("gb2312", range(0xB0, 0xD8))  # GB 2312 level 1 hanzi
    common |= _decoded("euc_jp", range(0xB0, 0xD0))  # JIS X 0208 level 1 kanji
    common |= _decoded("euc_kr", range(0xB0, 0xC9))  # KS X 1001 hangul syllables
    common |= _decoded("gb2312", range(0xA1, 0xAA))  # symbols, kana, full-width forms
    common |= set(range(0x3000, 0x3100))  # CJK punctuation, hiragana, katakana
    common |= set(range(0xFF00, 0xFFF0))  # half- and full-width forms
    return frozenset(common)


BUILDS = (
    Build(
        output="NotoSans-ExtraBold.ttf",
        package="@fontsource/noto-sans",
        version="5.3.0",
        integrity="sha512-fBCog2PY7DiVVTEEqtI/Qdinx/knobHYfoGpjFXdfBX5RoJaBp1Prw2G75p0OIsdlMZg3cLo0c+YbIUYOxnQJw==",
        files=tuple(
            f"noto-sans-{s}-800-normal.woff2"
            for s in (
                "latin",
                "latin-ext",
                "vietnamese",
                "greek",
                "greek-ext",
                "cyrillic",
                "cyrillic-ext",
            )
        ),
        licence="NotoSans-OFL.txt",
    ),
    Build(
        output="NotoSansArabic-Bold.ttf",
        package="@fontsource/noto-sans-arabic",
        version="5.3.0",
        integrity="sha512-i3t6GR0LOReyJVEk+YfYCnxv53wuIelg7Y9NGNvOq4Diq/EP0YszaGXkQwfQNigLjfO4POrLaPGM0sNliGYk7A==",
        files=("noto-sans-arabic-arabic-700-normal.woff2",),
        licence="NotoSansArabic-OFL.txt",
    ),
    Build(
        output="NotoSansHebrew-Bold.ttf",
        package="@fontsource/noto-sans-hebrew",
        version="5.3.0",
        integrity="sha512-7owtzuw9D+ipt0g8mcBGOm7MS/mv/REKsjSwEUe749UUsrnG54TSmusNn7oxv2GxbUORAzADLQ8ggdtt7oKkpg==",
        files=("noto-sans-hebrew-hebrew-700-normal.woff2",),
        licence="NotoSansHebrew-OFL.txt",
    ),
    Build(
        output="NotoSansSC-Bold-subset.ttf",
        package="@fontsource/noto-sans-sc",
        version="5.3.0",
        integrity="sha512-HeqIlGm0+ohOKxZLuHj1qW6r6avHH0OWdKERAcSDI0RQ+MXrteuLKA+M+5eOA8rYy0MFvOR5AT0fQo2rUkye0Q==",
        files=("noto-sans-sc-*-700-normal.woff2",),
        licence="NotoSansSC-OFL.txt",
        codepoints=cjk_codepoints(),
    ),
    Build(
        output="NotoEmoji-Regular.ttf",
        package="@fontsource/noto-emoji",
        version="5.3.2",
        integrity="sha512-N9CSzXJB04AVWYvFbuBgL2Dq964Zo91th/uOu/QLSuWBYuL9FWXGcEo6ZNwc/IJ7vmpm8KHaIKD7jF8pYm4taw==",
        files=("noto-emoji-*-400-normal.woff2",),
        licence="NotoEmoji-OFL.txt",
    ),
)


def fetch(build: Build, workdir: Path) -> Path:
    """npm pack the pinned version, verify its integrity, unpack it; returns package/."""
    target = workdir / build.package.replace("/", "_")
    target.mkdir()
    subprocess.run(
        ["npm", "pack", f"{build.package}@{build.version}", "--silent"],
        cwd=target,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    tarball = next(target.glob("*.tgz"))
    digest = base64.b64encode(hashlib.sha512(tarball.read_bytes()).digest()).decode()
    if f"sha512-{digest}" != build.integrity:
        raise SystemExit(f"{tarball.name}: integrity mismatch (sha512-{digest})")
    with tarfile.open(tarball) as tar:
        tar.extractall(target, filter="data")
    return target / "package"


def _subset(font: TTFont, unicodes: set[int]) -> None:
    options = subset.Options()
    options.hinting = False
    options.layout_features = ["*"]
    options.name_IDs = ["*"]
    options.name_languages = ["*"]
    options.notdef_outline = True
    options.glyph_names = False
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes=unicodes)
    subsetter.subset(font)


def build_one(build: Build, package: Path, workdir: Path) -> dict[str, object]:
    paths = sorted(
        (p for pattern in build.files for p in (package / "files").glob(pattern)),
        key=lambda p: p.name,
    )
    if not paths:
        raise SystemExit(f"{build.package}: no files match {build.files}")
    covered: set[int] = set()
    pieces: list[Path] = []
    modified = 0
    for i, path in enumerate(paths):
        font = TTFont(path, recalcTimestamp=False)
        font.flavor = None
        modified = max(modified, font["head"].modified)
        fresh = set(font.getBestCmap()) - covered
        if build.codepoints is not None:
            fresh &= build.codepoints
        if not fresh:
            continue
        _subset(font, fresh)
        covered |= fresh
        piece = workdir / f"{Path(build.output).stem}-{i}.ttf"
        font.save(piece)
        pieces.append(piece)
    if len(pieces) == 1:
        merged = TTFont(pieces[0], recalcTimestamp=False)
    else:
        merged = Merger().merge([str(p) for p in pieces])
    _subset(merged, covered)
    merged["head"].modified = modified
    merged["head"].created = modified
    out = DEST / build.output
    merged.save(out, reorderTables=True)
    TTFont(out).close()  # it loads
    shutil.copyfile(package / "LICENSE", DEST / build.licence)
    cmap = sorted(TTFont(out).getBestCmap())
    return {
        "file": build.output,
        "package": f"{build.package}@{build.version}",
        "licence": build.licence,
        "sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
        "bytes": out.stat().st_size,
        "ranges": _ranges(cmap),
    }


def _ranges(codepoints: list[int]) -> list[list[int]]:
    ranges: list[list[int]] = []
    for cp in codepoints:
        if ranges and ranges[-1][1] == cp - 1:
            ranges[-1][1] = cp
        else:
            ranges.append([cp, cp])
    return ranges


def anton_coverage() -> dict[str, object]:
    path = DEST / "Anton-Regular.ttf"
    return {
        "file": path.name,
        "package": "@fontsource/anton@5.3.0",
        "licence": "OFL.txt",
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "bytes": path.stat().st_size,
        "ranges": _ranges(sorted(TTFont(path).getBestCmap())),
    }


def main() -> None:
    fonts: dict[str, object] = {"Anton-Regular.ttf": anton_coverage()}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for build in BUILDS:
            package = fetch(build, workdir)
            info = build_one(build, package, workdir)
            fonts[build.output] = info
            print(f"{build.output}: {info['bytes']:,} bytes")
    (DEST / "coverage.json").write_text(json.dumps(fonts, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()

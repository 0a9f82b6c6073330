"""Render benchmark: floor vs naive vs engine, side by side (``make bench-render``).

One process, the same generated templates and captions for every column:

* **floor**: only JPEG-encode the already-composed output image (what no renderer can
  avoid if it encodes its whole output);
* **naive**: decode the template bytes, fit the font by trying sizes (binary search,
  a freshly loaded font per size tried), draw with ``ImageDraw.text(stroke_width=...)``,
  encode: no caches, what a simple worker does;
* **engine**: ``memeforge_renderer.engine.render`` with warm caches (templates decoded
  once per process, glyph masks, font metrics).

All three columns render one shared list of caption pairs; no timed pair repeats an
earlier one, so no cache of whole captions can stand in for drawing. Words are sampled
by their frequency in English (``wordfreq``, 50,000 words), and the warm-up has captions
of its own from the same distribution: the timed captions bring unseen words about as
often as real traffic would, and the word-measurement and glyph caches miss accordingly
(their hit rates are in the JSON line). Prints a table and one JSON line; then the peak
RSS of a fresh worker process after 1,000 renders over 50 templates.

    python -m bench.render                 # default, well under a minute
    python -m bench.render --seconds 10    # longer cells
    python -m bench.render --pool          # also: 2 processes vs 2 threads

Then the animated section (bench/animated.py): a 40-frame GIF captioned by the engine vs
a naive per-frame loop, frames/s and output bytes (``--no-animated`` skips it).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import random
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

from memeforge_common.limits import MAX_CAPTION_CHARS
from memeforge_common.models import RenderSpec, TextBox, classic_boxes
from memeforge_renderer import engine
from memeforge_renderer.engine.codec import jpeg_options
from memeforge_renderer.engine.typeface import FONT_PATH
from PIL import Image, ImageDraw, ImageFont

from devenv import REPO_ROOT as ROOT
from tests.support.captions import PATHOLOGICAL

QUALITY = 85
SIZES = (800, 1600)
# Caption words are drawn by their frequency in real English (wordfreq: Exquisite Corpus,
# a blend of subtitles, news, books, Wikipedia, web text, Reddit and Twitter), from the
# 50,000 most common words. So, as in real traffic, most words are common but every
# caption has a fair chance of a word the engine has never measured or rasterised.
VOCABULARY_SIZE = 50_000


# --------------------------------------------------------------------------- inputs


def make_template(seed: int, width: int, height: int) -> bytes:
    """A photo-like picture (smooth colour fields, shapes, grain); nothing copyrighted."""
    rng = random.Random(seed)
    low = Image.frombytes("RGB", (12, 9), rng.randbytes(12 * 9 * 3))
    image = low.resize((width, height), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x, y = rng.randrange(width), rng.randrange(height)
        r = rng.randrange(width // 20, width // 5)
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
    grain = Image.frombytes("L", (width, height), rng.randbytes(width * height))
    grain = grain.point(lambda v: 128 + (v - 128) // 10)
    image = Image.merge(
        "RGB",
        [Image.blend(c, grain, 0.25).point(lambda v: min(255, v * 1.3)) for c in image.split()],
    )
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


@cache
def _vocabulary() -> tuple[list[str], list[float]]:
    from wordfreq import top_n_list, word_frequency

    words = top_n_list("en", VOCABULARY_SIZE)
    return words, [word_frequency(w, "en") for w in words]


def captions(seed: int) -> Iterator[tuple[str, str]]:
    """Caption pairs of frequency-weighted English words, never the same pair twice."""
    words, weights = _vocabulary()
    rng = random.Random(seed)
    seen: set[tuple[str, str]] = set()
    while True:
        pair = (
            " ".join(rng.choices(words, weights, k=rng.randint(2, 7))),
            " ".join(rng.choices(words, weights, k=rng.randint(2, 8))),
        )
        if pair not in seen:
            seen.add(pair)
            yield pair


def unseen_word_share(timed: list[tuple[str, str]], seen: list[tuple[str, str]]) -> float:
    """Share of the words in ``timed`` that no caption in ``seen`` had."""
    known = {w for pair in seen for text in pair for w in text.upper().split()}
    timed_words = [w for pair in timed for text in pair for w in text.upper().split()]
    return sum(w not in known for w in timed_words) / max(1, len(timed_words))


class CacheCounter:
    """Counts lookups and misses of the engine's word-measurement and glyph caches while
    active (wrapping their methods), so the hit rates of a run can be reported."""

    def __init__(self) -> None:
        self.lookups = {"words": 0, "glyphs": 0}
        self.misses = {"words": 0, "glyphs": 0}

    def __enter__(self) -> CacheCounter:
        from memeforge_renderer.engine.draw import GlyphCache
        from memeforge_renderer.engine.text import Shaper

        self._saved = (Shaper.measure, Shaper._measure, GlyphCache.get)
        measure, measure_uncached, glyph_get = self._saved
        counter = self

        def counted_measure(shaper: Any, text: str) -> Any:
            counter.lookups["words"] += 1
            return measure(shaper, text)

        def counted_measure_uncached(shaper: Any, text: str) -> Any:
            counter.misses["words"] += 1
            return measure_uncached(shaper, text)

        def counted_glyph_get(glyphs: Any, *key: Any) -> Any:
            counter.lookups["glyphs"] += 1
            before = glyphs.misses
            found = glyph_get(glyphs, *key)
            counter.misses["glyphs"] += glyphs.misses - before
            return found

        Shaper.measure = counted_measure  # type: ignore[method-assign, assignment]
        Shaper._measure = counted_measure_uncached  # type: ignore[method-assign, assignment]
        GlyphCache.get = counted_glyph_get  # type: ignore[method-assign, assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        from memeforge_renderer.engine.draw import GlyphCache
        from memeforge_renderer.engine.text import Shaper

        measure, measure_uncached, glyph_get = self._saved
        Shaper.measure = measure  # type: ignore[method-assign]
        Shaper._measure = measure_uncached  # type: ignore[method-assign]
        GlyphCache.get = glyph_get  # type: ignore[method-assign]

    def hit_rates(self) -> dict[str, float]:
        return {
            f"{name}_hit_rate": 1 - self.misses[name] / self.lookups[name]
            for name in self.lookups
            if self.lookups[name]
        }


# --------------------------------------------------------------------------- naive


def naive_render(template: bytes, top: str, bottom: str) -> bytes:
    source = Image.open(io.BytesIO(template))
    source.load()
    image = source.convert("RGB")
    w, h = image.size
    draw = ImageDraw.Draw(image)
    for text, y in ((top, 0.02), (bottom, 0.76)):
        if not text.strip():
            continue
        box = (round(0.03 * w), round(y * h), round(0.94 * w), round(0.22 * h))
        size, lines, font = _naive_fit(text.upper(), box[2], box[3])
        stroke = max(1, round(size / 15))
        spacing = round(size * 0.1)
        block = "\n".join(lines)
        draw.multiline_text(
            (box[0] + box[2] / 2, box[1] + box[3] / 2),
            block,
            font=font,
            fill="white",
            anchor="mm",
            align="center",
            spacing=spacing,
            stroke_width=stroke,
            stroke_fill="black",
        )
    out = io.BytesIO()
    image.save(out, "JPEG", quality=QUALITY)
    return out.getvalue()


def _naive_fit(text: str, box_w: int, box_h: int) -> tuple[int, list[str], Any]:
    lo, hi = 10, box_h
    best: tuple[int, list[str], Any] | None = None
    while lo <= hi:
        size = (lo + hi) // 2
        font = ImageFont.truetype(FONT_PATH, size)  # no font cache: a simple worker
        stroke = max(1, round(size / 15))
        lines: list[str] = []
        for word in text.split():
            trial = f"{lines[-1]} {word}" if lines else word
            if lines and font.getlength(trial) + 2 * stroke <= box_w:
                lines[-1] = trial
            else:
                lines.append(word)
        scratch = ImageDraw.Draw(Image.new("L", (1, 1)))
        x0, t, r, b = scratch.multiline_textbbox(
            (0, 0), "\n".join(lines), font=font, spacing=round(size * 0.1), stroke_width=stroke
        )
        if r - x0 <= box_w and b - t <= box_h:
            best, lo = (size, lines, font), size + 1
        else:
            hi = size - 1
    if best is None:
        font = ImageFont.truetype(FONT_PATH, 10)
        return 10, [text[:60]], font
    return best


# --------------------------------------------------------------------------- timing


def interleaved(
    cells: dict[str, tuple[Callable[[int], object], int]], seconds: float
) -> dict[str, tuple[float, int, float]]:
    """Mean wall seconds per call of each cell's fn(i), the count, and mean CPU seconds
    per call (this thread's: on a shared machine, waiting for a core is not counted).
    The cells run in alternating rounds (``batch`` calls of one cell, then of the next)
    so that noise from other processes lands on every column alike. Each cell gets
    about ``seconds`` of wall time in all."""
    spent = dict.fromkeys(cells, 0.0)
    cpu = dict.fromkeys(cells, 0.0)
    count = dict.fromkeys(cells, 0)
    while min(spent.values()) < seconds:
        for name, (fn, batch) in cells.items():
            n = count[name]
            start, start_cpu = time.perf_counter(), time.thread_time()
            for i in range(n, n + batch):
                fn(i)
            spent[name] += time.perf_counter() - start
            cpu[name] += time.thread_time() - start_cpu
            count[name] = n + batch
    return {
        name: (spent[name] / count[name], count[name], cpu[name] / count[name]) for name in cells
    }


def run_size(side: int, templates: int, seconds: float, warmup: int) -> dict[str, Any]:
    height = side * 3 // 4
    tpls = [make_template(1000 + i, side, height) for i in range(templates)]
    keys = [f"templates/bench-{side}-{i}" for i in range(templates)]
    gen = captions(side)
    # Warm-up captions are drawn from the same distribution as the timed ones, but are
    # not the timed ones: the timed words are new to the caches at the natural rate.
    warm_pairs = [next(gen) for _ in range(warmup)]
    # One caption list for every column (built up front: pydantic is not timed).
    pairs = [next(gen) for _ in range(12000)]
    specs = [RenderSpec(boxes=classic_boxes(*pair), quality=QUALITY) for pair in pairs]
    for i, pair in enumerate(warm_pairs):
        spec = RenderSpec(boxes=classic_boxes(*pair), quality=QUALITY)
        engine.render(tpls[i % templates], spec, template_key=keys[i % templates], etag="e1")
    engine_stats: dict[str, float] = {"decode": 0, "layout": 0, "draw": 0, "encode": 0}

    def engine_one(i: int) -> None:
        out = engine.render(
            None, specs[i % len(specs)], template_key=keys[i % templates], etag="e1"
        )
        for k, v in out.report["timings_ms"].items():
            engine_stats[k] += v

    # floor: the engine's outputs for the first captions of the list, decoded once, then
    # only encoded (untimed; composing them warms the caches for those captions only)
    composed = []
    for i in range(16):
        out = engine.render(None, specs[i], template_key=keys[i % templates], etag="e1")
        img = Image.open(io.BytesIO(out.data))
        img.load()
        composed.append(img.convert("RGB"))
    options = jpeg_options(QUALITY)

    def floor_one(i: int) -> None:
        image = composed[i % len(composed)]
        image.save(io.BytesIO(), "JPEG", **options)

    def naive_one(i: int) -> None:
        naive_render(tpls[i % templates], *pairs[i % len(pairs)])

    scale = 1 if side <= 800 else 4
    timings = interleaved(
        {
            "floor": (floor_one, 40 // scale),
            "engine": (engine_one, 40 // scale),
            "naive": (naive_one, 4 // scale or 1),
        },
        seconds,
    )
    floor_s, floor_n, floor_cpu = timings["floor"]
    engine_s, engine_n, engine_cpu = timings["engine"]
    naive_s, naive_n, _ = timings["naive"]
    if engine_n > len(specs):
        print(f"note: {engine_n} engine renders reused captions after {len(specs)}")
    timed = [pairs[i % len(pairs)] for i in range(engine_n)]
    unique = len(set(timed))
    # Cache hit rates on the next captions of the list, as the warmed engine meets them
    # (counted apart from the timed renders, so that counting costs them nothing).
    with CacheCounter() as counter:
        for i in range(engine_n, engine_n + 200):
            engine.render(None, specs[i % len(specs)], template_key=keys[i % templates], etag="e1")
    return {
        "side": side,
        "size": f"{side}x{height}",
        "floor_ms": floor_s * 1000,
        "naive_ms": naive_s * 1000,
        "engine_ms": engine_s * 1000,
        "floor_rps": 1 / floor_s,
        "naive_rps": 1 / naive_s,
        "engine_rps": 1 / engine_s,
        "engine_vs_floor": floor_s / engine_s,
        # the same ratio in CPU time per render: what load from other processes moves least
        "engine_vs_floor_cpu": floor_cpu / engine_cpu,
        "engine_vs_naive": naive_s / engine_s,
        "renders": {"floor": floor_n, "naive": naive_n, "engine": engine_n},
        # distinct caption pairs among the timed engine renders, and per render (1.0:
        # no timed render repeated an earlier render's captions)
        "unique_captions": unique,
        "captions_per_render": unique / engine_n,
        "unseen_word_share": unseen_word_share(timed, warm_pairs),
        "cache": counter.hit_rates(),
        "engine_stage_ms": {k: v / engine_n for k, v in engine_stats.items()},
    }


def pathological_ms(side: int) -> float:
    """The slowest render of a pathological caption at the caption limit, in ms."""
    template = make_template(77, side, side * 3 // 4)
    slowest = 0.0
    for text in PATHOLOGICAL:
        box = TextBox(text=text[:MAX_CAPTION_CHARS], x=0, y=0, width=0.5, height=0.25)
        spec = RenderSpec(boxes=(box,))
        start = time.perf_counter()
        engine.render(template, spec)
        slowest = max(slowest, time.perf_counter() - start)
    return slowest * 1000


# --------------------------------------------------------------------------- RSS


def rss_child(renders: int, templates: int, side: int) -> None:
    """Run as a fresh process: what a pool worker's memory looks like after real work."""
    engine.warm_up()
    height = side * 3 // 4
    tpls = [make_template(5000 + i, side, height) for i in range(templates)]
    pairs = json.loads(sys.stdin.read())  # from measure_rss
    start = time.perf_counter()
    for i in range(renders):
        t = i % templates
        spec = RenderSpec(boxes=classic_boxes(*pairs[i]), quality=QUALITY)
        try:
            engine.render(None, spec, template_key=f"t/{t}", etag="e")
        except engine.TemplateNotCached:
            engine.render(tpls[t], spec, template_key=f"t/{t}", etag="e")
    elapsed = time.perf_counter() - start
    peak_kib = _peak_rss_kib()
    print(
        json.dumps(
            {
                "renders": renders,
                "templates": templates,
                "peak_rss_mb": round(peak_kib / 1024, 1),
                "template_cache_mb": round(engine.TEMPLATES.size_bytes / 2**20, 1),
                "glyph_cache_mb": round(engine.GLYPHS.size_bytes / 2**20, 1),
                "seconds": round(elapsed, 2),
            }
        )
    )


def _peak_rss_kib() -> int:
    """This process's peak RSS. VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec,
    so a child started by a big parent would report the parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def measure_rss(renders: int, templates: int, side: int) -> dict[str, Any]:
    # The captions are made here and handed over on stdin: loading the word list in the
    # child would count wordfreq's memory as the worker's.
    gen = captions(7)
    pairs = json.dumps([next(gen) for _ in range(renders)])
    cmd = [sys.executable, "-m", "bench.render", "--rss-child", str(renders), str(templates)]
    cmd.append(str(side))
    done = subprocess.run(cmd, cwd=ROOT, input=pairs, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# --------------------------------------------------------------------------- pool


_POOL_TEMPLATES: list[bytes] = []


def _pool_init() -> None:
    engine.warm_up()
    _POOL_TEMPLATES[:] = [make_template(9000 + i, 800, 600) for i in range(8)]


def _pool_job(args: tuple[int, str, str]) -> int:
    """One render as the worker does it: the template from the process cache when there."""
    index, top, bottom = args
    spec = RenderSpec(boxes=classic_boxes(top, bottom), quality=QUALITY)
    key = f"p/{index}"
    try:
        out = engine.render(None, spec, template_key=key, etag="e")
    except engine.TemplateNotCached:
        out = engine.render(_POOL_TEMPLATES[index], spec, template_key=key, etag="e")
    return len(out.data)


def measure_pool(workers: int, seconds: float) -> dict[str, float]:
    """Renders/s of ``workers`` processes vs ``workers`` threads on the same jobs."""
    import multiprocessing
    from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor

    gen = captions(99)
    jobs = [(i % 8, *next(gen)) for i in range(40000)]
    result: dict[str, float] = {}
    executors: dict[str, Callable[[], Executor]] = {
        "processes": lambda: ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn"), initializer=_pool_init
        ),
        "threads": lambda: ThreadPoolExecutor(workers, initializer=_pool_init),
    }
    for name, make in executors.items():
        with make() as pool:
            list(pool.map(_pool_job, jobs[: workers * 40]))  # warm every worker
            done = workers * 40
            start = time.perf_counter()
            while time.perf_counter() - start < seconds:
                batch = jobs[done : done + workers * 50]
                list(pool.map(_pool_job, batch, chunksize=8))
                done += len(batch)
            result[f"{name}_rps"] = (done - workers * 40) / (time.perf_counter() - start)
    return result


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.5, help="per cell (default 2.5)")
    parser.add_argument("--templates", type=int, default=8, help="templates per size")
    parser.add_argument("--warmup", type=int, default=1500, help="untimed engine renders")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--rss-renders", type=int, default=1000)
    parser.add_argument("--rss-templates", type=int, default=50)
    parser.add_argument("--no-rss", action="store_true")
    parser.add_argument("--pool", action="store_true", help="also compare processes/threads")
    parser.add_argument("--no-animated", action="store_true", help="skip the GIF section")
    parser.add_argument("--rss-child", nargs=3, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rss_child:
        rss_child(*args.rss_child)
        return

    build = engine.pillow_build()
    features = build["features"]
    print(
        f"Pillow build: {build['distribution']} {build['version']}"
        f" (freetype {features['freetype2']['version']}, raqm {features['raqm']['version']},"
        f" libjpeg-turbo {features['libjpeg_turbo']['version']})"
        f"; python {sys.version.split()[0]}; cores available {len(os.sched_getaffinity(0))}"
    )
    rows = [run_size(side, args.templates, args.seconds, args.warmup) for side in args.sizes]
    slowest = pathological_ms(800)
    header = (
        f"{'output':>10} {'floor ms':>9} {'naive ms':>9} {'engine ms':>10} "
        f"{'floor r/s':>10} {'naive r/s':>10} {'engine r/s':>11} "
        f"{'eng/floor':>10} {'eng/naive':>10} {'new words':>10} {'word hits':>10} "
        f"{'glyph hits':>11}"
    )
    print(header)
    for r in rows:
        print(
            f"{r['size']:>10} {r['floor_ms']:>9.3f} {r['naive_ms']:>9.3f} {r['engine_ms']:>10.3f} "
            f"{r['floor_rps']:>10.0f} {r['naive_rps']:>10.0f} {r['engine_rps']:>11.0f} "
            f"{r['engine_vs_floor']:>10.2f} {r['engine_vs_naive']:>10.2f} "
            f"{r['unseen_word_share']:>10.1%} {r['cache'].get('words_hit_rate', 0):>10.1%} "
            f"{r['cache'].get('glyphs_hit_rate', 0):>11.1%}"
        )
    for r in rows:
        print(f"  eng/floor in CPU time at {r['size']}: {r['engine_vs_floor_cpu']:.2f}")
    for r in rows:
        stages = ", ".join(f"{k} {v:.3f}" for k, v in r["engine_stage_ms"].items())
        print(f"  engine stages at {r['size']} (ms/render): {stages}")
    print(
        "  (r/s = renders per second on one core; every column renders the same captions;"
        " new words: share of timed words the warm-up never had)"
    )
    print(f"  slowest pathological caption ({MAX_CAPTION_CHARS} chars) at 800 px: {slowest:.0f} ms")
    result: dict[str, Any] = {
        "bench": "render",
        "pillow": {"distribution": build["distribution"], "version": build["version"]},
        "quality": QUALITY,
        "results": rows,
        "pathological_max_ms": slowest,
    }
    goal = next((r for r in rows if r["side"] == 800), None)
    if goal is not None:
        result["goal_800"] = {
            "engine_vs_floor": round(goal["engine_vs_floor"], 3),
            "engine_vs_floor_cpu": round(goal["engine_vs_floor_cpu"], 3),
            "engine_vs_naive": round(goal["engine_vs_naive"], 3),
            "met": goal["engine_vs_floor"] >= 1.0 and goal["engine_vs_naive"] >= 4,
        }
    if not args.no_rss:
        rss = measure_rss(args.rss_renders, args.rss_templates, 800)
        print(
            f"worker peak RSS after {rss['renders']} renders over {rss['templates']} templates"
            f" (800 px): {rss['peak_rss_mb']} MB (template cache {rss['template_cache_mb']} MB,"
            f" glyph cache {rss['glyph_cache_mb']} MB)"
        )
        result["rss"] = rss
        result["rss"]["goal_met"] = rss["peak_rss_mb"] <= 200
    if args.pool:
        pool = measure_pool(2, args.seconds)
        print(
            f"pool of 2: processes {pool['processes_rps']:.0f} r/s, "
            f"threads {pool['threads_rps']:.0f} r/s"
        )
        result["pool"] = pool
    if not args.no_animated:
        from bench.animated import print_animated, run_animated  # it imports this module

        result["animated"] = run_animated(args.seconds)
        print_animated(result["animated"])
    print(json.dumps(_rounded(result)))


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 3) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(v) for v in value]
    return value


if __name__ == "__main__":
    main()

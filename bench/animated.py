"""The animated section of ``bench/render.py``: captioned GIF, engine vs a naive loop.

On a generated 40-frame 480x360 GIF (a ball moving over a photo-like backdrop, one
palette, like most GIFs people caption):

* **naive**: per frame, decode it, draw both captions with ``ImageDraw`` (stroke), quantize
  it to 256 colours, append; then Pillow's GIF writer (which crops each frame to what
  changed). The font is fitted once per render, not per frame: the loop is naive about
  frames, not about fitting.
* **engine**: ``engine.render(..., format="gif")`` with the animation cached as the pool
  process keeps it (decoded once per template).
* **engine cold**: the same with the cache emptied first (decoding every frame included).

Every column renders the same caption pairs, never one twice. Times are CPU seconds of
this process (``time.process_time``), which other load on the machine does not inflate.
"""

from __future__ import annotations

import io
import random
import time
from collections.abc import Callable
from typing import Any

from memeforge_common.models import RenderSpec, classic_boxes
from memeforge_renderer import engine
from PIL import Image, ImageDraw

from bench.render import _naive_fit, captions

FRAMES = 40
SIZE = (480, 360)
DURATION_MS = 50


def make_animation(seed: int = 16) -> bytes:
    """A ball crossing a smooth colour field with a few shapes; nothing copyrighted."""
    rng = random.Random(seed)
    width, height = SIZE
    low = Image.frombytes("RGB", (8, 6), rng.randbytes(8 * 6 * 3))
    backdrop = low.resize(SIZE, Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(backdrop)
    for _ in range(5):
        x, y, r = rng.randrange(width), rng.randrange(height), rng.randrange(20, 70)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(rng.randrange(256) for _ in "rgb"))
    frames = []
    for i in range(FRAMES):
        frame = backdrop.copy()
        x = 20 + (width - 100) * i // FRAMES
        y = height // 2 - 60 + (i % 10) * 6
        ImageDraw.Draw(frame).ellipse((x, y, x + 60, y + 60), fill=(230, 60, 40))
        frames.append(frame)
    palette = frames[0].quantize(256)
    frames = [f.quantize(palette=palette, dither=Image.Dither.NONE) for f in frames]
    out = io.BytesIO()
    frames[0].save(
        out, "GIF", save_all=True, append_images=frames[1:], duration=DURATION_MS, loop=0
    )
    return out.getvalue()


def naive_gif(template: bytes, top: str, bottom: str) -> bytes:
    source = Image.open(io.BytesIO(template))
    width, height = source.size
    fitted = []
    for text, y in ((top, 0.02), (bottom, 0.76)):
        box = (round(0.03 * width), round(y * height), round(0.94 * width), round(0.22 * height))
        size, lines, font = _naive_fit(text.upper(), box[2], box[3])
        fitted.append((box, size, "\n".join(lines), font))
    frames = []
    durations = []
    for index in range(source.n_frames):
        source.seek(index)
        frame = source.convert("RGB")
        draw = ImageDraw.Draw(frame)
        for box, size, block, font in fitted:
            draw.multiline_text(
                (box[0] + box[2] / 2, box[1] + box[3] / 2),
                block,
                font=font,
                fill="white",
                anchor="mm",
                align="center",
                spacing=round(size * 0.1),
                stroke_width=max(1, round(size / 15)),
                stroke_fill="black",
            )
        frames.append(frame.quantize(256))
        durations.append(source.info.get("duration", DURATION_MS))
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=durations, loop=0)
    return out.getvalue()


def _cpu_per_call(fn: Callable[[int], int], calls: range) -> tuple[float, list[int]]:
    start = time.process_time()
    sizes = [fn(i) for i in calls]
    return (time.process_time() - start) / len(calls), sizes


def run_animated(seconds: float) -> dict[str, Any]:
    template = make_animation()
    key = "templates/bench-animated"
    gen = captions(4242)
    pairs = [next(gen) for _ in range(4000)]
    specs = [RenderSpec(boxes=classic_boxes(*pair), format="gif") for pair in pairs]
    for i in range(3000, 3010):  # warm-up: decode the animation once, load the fonts
        engine.render(template, specs[i], template_key=key, etag="e")

    def engine_one(i: int) -> int:
        return len(engine.render(None, specs[i], template_key=key, etag="e").data)

    def engine_cold(i: int) -> int:
        engine.ANIMATIONS.clear()
        return len(engine.render(template, specs[i], template_key=key, etag="e").data)

    def naive_one(i: int) -> int:
        return len(naive_gif(template, *pairs[i]))

    totals = {"naive": 0.0, "engine": 0.0, "engine_cold": 0.0}
    sizes: dict[str, list[int]] = {name: [] for name in totals}
    done = {name: 0 for name in totals}
    batches: dict[str, tuple[Callable[[int], int], int]] = {
        "naive": (naive_one, 1),
        "engine": (engine_one, 20),
        "engine_cold": (engine_cold, 2),
    }
    i = 0
    while min(totals.values()) < seconds:  # alternating rounds: load lands on all alike
        for name, (fn, batch) in batches.items():
            per_call, got = _cpu_per_call(fn, range(i, i + batch))
            totals[name] += per_call * batch
            sizes[name] += got
            done[name] += batch
        i += 20
    engine.ANIMATIONS.clear()
    check = engine.render(template, specs[0], template_key=key, etag="e")
    ms = {name: totals[name] / done[name] * 1000 for name in totals}
    fps = {name: FRAMES / (ms[name] / 1000) for name in totals}
    mean_bytes = {name: sum(sizes[name]) / len(sizes[name]) for name in totals}
    engine_sizes = sizes["engine"][: len(sizes["naive"])]
    return {
        "template": f"{FRAMES} frames {SIZE[0]}x{SIZE[1]} GIF, {len(template)} bytes",
        "renders": done,
        "cpu_ms_per_render": ms,
        "frames_per_s": fps,
        "engine_vs_naive_fps": fps["engine"] / fps["naive"],
        "engine_cold_vs_naive_fps": fps["engine_cold"] / fps["naive"],
        "mean_bytes": mean_bytes,
        # the same captions, pair by pair: the engine's output over the naive one's
        "engine_vs_naive_bytes": sum(engine_sizes) / sum(sizes["naive"]),
        "engine_stage_ms": check.report["timings_ms"],
        "goal": {
            "fps_ratio_at_least": 5,
            "bytes_ratio_at_most": 1,
            "met": fps["engine"] / fps["naive"] >= 5 and sum(engine_sizes) <= sum(sizes["naive"]),
        },
    }


def print_animated(result: dict[str, Any]) -> None:
    ms, fps, size = result["cpu_ms_per_render"], result["frames_per_s"], result["mean_bytes"]
    print(f"animated: {result['template']} (CPU time of this process)")
    print(f"{'column':>12} {'ms/render':>10} {'frames/s':>9} {'bytes':>9}")
    for name in ("naive", "engine", "engine_cold"):
        print(f"{name:>12} {ms[name]:>10.1f} {fps[name]:>9.0f} {size[name]:>9.0f}")
    print(
        f"  engine/naive frames/s {result['engine_vs_naive_fps']:.1f}x (cold"
        f" {result['engine_cold_vs_naive_fps']:.1f}x), bytes"
        f" {result['engine_vs_naive_bytes']:.2f}x of naive (goal: >= 5x, <= 1x)"
    )

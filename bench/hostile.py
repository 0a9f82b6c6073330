"""Hostile inputs, measured: peak RSS and CPU of each trigger of issue #18 (``make bench-hostile``).

Every trigger runs in a fresh process, so its peak RSS (``ru_maxrss``) is its own:

* **huge_boxes**: a 6324x6324 PNG (just under the 40 Mpx source limit) with 16 boxes
  that each cover the whole image; **huge_boxes_rotated**: the same, turned 30 degrees;
* **private_use**: memes of 16 boxes x 500 random private-use / unassigned characters on
  an 800x600 template, one after the other in one process: the RSS curve over them;
* **upload_decode**: the api's upload check of the same 6324x6324 PNG;
* **icc**: a 64x64 JPEG carrying 5 MB of random ICC data, rendered with a thumbnail.

Prints a table and one JSON line (``{"bench": "hostile", ...}``). Outcomes are "ok" or
the typed failure reason. Rendering is pure engine code: no emulator is started.

    python -m bench.hostile                  # all triggers
    python -m bench.hostile --memes 2000     # the long private-use curve
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HUGE_SIDE = 6324


def huge_png() -> bytes:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (HUGE_SIDE, HUGE_SIDE), (40, 90, 140))
    draw = ImageDraw.Draw(image)
    for i in range(0, HUGE_SIDE, 97):  # some structure, still a small file
        draw.line((0, i, HUGE_SIDE, HUGE_SIDE - i), fill=(200, 180, 60), width=3)
    out = io.BytesIO()
    image.save(out, "PNG", optimize=True)
    return out.getvalue()


def small_jpeg(size: tuple[int, int] = (800, 600), icc: bytes | None = None) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, (120, 60, 30)).save(out, "JPEG", icc_profile=icc)
    return out.getvalue()


def hostile_caption(rng: random.Random, n: int = 500) -> str:
    """Private-use and unassigned-plane characters, with a few random BMP ones."""
    pools = [(0xE000, 0xF8FF), (0xF0000, 0xFFFFD), (0x100000, 0x10FFFD), (0x0400, 0x2FFF)]
    chars = []
    for _ in range(n):
        lo, hi = rng.choice(pools)
        chars.append(chr(rng.randint(lo, hi)))
        if rng.random() < 0.1:
            chars.append(" ")
    return "".join(chars)[:n]


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _render(template: bytes, spec: Any) -> tuple[str, Any]:
    from memeforge_renderer import engine

    try:
        return "ok", engine.render(template, spec)
    except engine.RenderError as err:
        return err.reason, None


def trigger_huge(rotation: float) -> dict[str, Any]:
    from memeforge_common.models import RenderSpec, TextBox

    template = huge_png()
    words = "one does not simply render sixteen boxes that cover the whole template at once"
    spec = RenderSpec(
        boxes=tuple(
            TextBox(text=f"{words} {i}", x=0, y=0, width=1, height=1, rotation=rotation)
            for i in range(16)
        )
    )
    base, c0, t0 = _rss_mb(), _cpu_s(), time.perf_counter()
    outcome, _ = _render(template, spec)
    return {
        "outcome": outcome,
        "peak_rss_mb": round(_rss_mb(), 1),
        "rss_before_mb": round(base, 1),
        "cpu_s": round(_cpu_s() - c0, 2),
        "wall_s": round(time.perf_counter() - t0, 2),
    }


def trigger_private_use(memes: int) -> dict[str, Any]:
    from memeforge_common.models import RenderSpec, TextBox

    rng = random.Random(18)
    template = small_jpeg()
    _render(template, RenderSpec(boxes=(TextBox(text="warm", x=0, y=0, width=1, height=1),)))
    start_rss, c0 = _current_rss_mb(), _cpu_s()
    curve: list[list[float]] = []
    outcomes: dict[str, int] = {}
    step = max(1, memes // 10)
    for n in range(1, memes + 1):
        spec = RenderSpec(
            boxes=tuple(
                TextBox(
                    text=hostile_caption(rng), x=0, y=i / 16, width=1, height=1 / 16, case="none"
                )
                for i in range(16)
            )
        )
        outcome, _ = _render(template, spec)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        if n % step == 0 or n == memes:
            curve.append([n, round(_current_rss_mb(), 1)])
    cpu = _cpu_s() - c0
    return {
        "outcome": ",".join(f"{k}:{v}" for k, v in sorted(outcomes.items())),
        "memes": memes,
        "rss_start_mb": round(start_rss, 1),
        "rss_end_mb": curve[-1][1],
        "rss_per_meme_kb": round((curve[-1][1] - start_rss) * 1024 / memes, 1),
        "cpu_per_meme_s": round(cpu / memes, 3),
        "peak_rss_mb": round(_rss_mb(), 1),
        "curve": curve,
    }


def trigger_upload_decode() -> dict[str, Any]:
    from memeforge_api.images import InvalidImage, inspect_image

    data = huge_png()
    base, c0 = _current_rss_mb(), _cpu_s()
    try:
        inspect_image(data, max_pixels=40_000_000)
        outcome = "ok"
    except InvalidImage as err:
        outcome = err.code
    return {
        "outcome": outcome,
        "rss_before_mb": round(base, 1),
        "peak_rss_mb": round(_rss_mb(), 1),
        "added_mb": round(_rss_mb() - base, 1),
        "cpu_s": round(_cpu_s() - c0, 2),
    }


def trigger_icc() -> dict[str, Any]:
    from memeforge_common.models import RenderSpec, TextBox

    icc = random.Random(7).randbytes(5 * 1024 * 1024)
    template = small_jpeg((64, 64), icc)
    spec = RenderSpec(
        boxes=(TextBox(text="icc", x=0, y=0, width=1, height=0.5),), thumbnail_side=16
    )
    outcome, output = _render(template, spec)
    return {
        "outcome": outcome,
        "template_bytes": len(template),
        "output_bytes": len(output.data) if output else 0,
        "thumbnail_bytes": len(output.thumbnail or b"") if output else 0,
        "peak_rss_mb": round(_rss_mb(), 1),
    }


TRIGGERS = {
    "huge_boxes": lambda a: trigger_huge(0.0),
    "huge_boxes_rotated": lambda a: trigger_huge(30.0),
    "private_use": lambda a: trigger_private_use(a.memes),
    "upload_decode": lambda a: trigger_upload_decode(),
    "icc": lambda a: trigger_icc(),
}


def run_child(name: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.hostile", "--child", name, "--memes", str(args.memes)]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        return {"outcome": f"crashed rc={out.returncode}", "stderr": out.stderr[-400:]}
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memes", type=int, default=40, help="private-use memes in one process")
    parser.add_argument("--only", action="append", choices=sorted(TRIGGERS))
    parser.add_argument("--child", choices=sorted(TRIGGERS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(TRIGGERS[args.child](args)))
        return
    results = {name: run_child(name, args) for name in (args.only or TRIGGERS)}
    print(f"{'trigger':<20} {'outcome':<22} {'peak RSS MB':>12} {'CPU s':>8}")
    for name, r in results.items():
        cpu = r.get("cpu_s", r.get("cpu_per_meme_s", ""))
        print(f"{name:<20} {r['outcome']:<22} {r.get('peak_rss_mb', ''):>12} {cpu:>8}")
        if name == "private_use" and "curve" in r:
            print(f"{'':<20} RSS curve (meme, MB): {r['curve']}")
        if name == "icc" and "output_bytes" in r:
            print(f"{'':<20} output {r['output_bytes']} B, thumbnail {r['thumbnail_bytes']} B")
    print(json.dumps({"bench": "hostile", "results": results}))


if __name__ == "__main__":
    main()

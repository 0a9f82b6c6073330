"""Generate the seed template images and seeds.json (deterministic, no copyrighted art).

    .venv/bin/python scripts/make_seeds.py

Every image is drawn here from gradients and simple shapes with a fixed random seed,
so a rerun with the same Pillow build writes the same bytes.
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

ROOT = Path(__file__).resolve().parent.parent
DEST = ROOT / "services/common/memeforge_common/seeds"

RGB = tuple[int, int, int]


def vertical_gradient(size: tuple[int, int], top: RGB, bottom: RGB) -> Image.Image:
    mask = Image.linear_gradient("L").resize(size)
    return Image.composite(Image.new("RGB", size, bottom), Image.new("RGB", size, top), mask)


def sunset() -> Image.Image:
    """Orange-to-violet sky, a sun, two dark hill ranges."""
    w, h = 800, 600
    image = vertical_gradient((w, h), (255, 170, 70), (90, 40, 120))
    draw = ImageDraw.Draw(image)
    draw.ellipse((w * 0.55, h * 0.30, w * 0.80, h * 0.30 + w * 0.25), fill=(255, 225, 120))
    draw.polygon(
        [(0, h), (0, h * 0.62), (w * 0.25, h * 0.48), (w * 0.55, h * 0.66), (w, h * 0.55), (w, h)],
        fill=(60, 30, 80),
    )
    draw.polygon(
        [(0, h), (0, h * 0.80), (w * 0.40, h * 0.70), (w * 0.75, h * 0.84), (w, h * 0.76), (w, h)],
        fill=(35, 15, 50),
    )
    return image


def ocean() -> Image.Image:
    """Sky over sea, with bands of soft waves."""
    w, h = 800, 600
    image = vertical_gradient((w, h), (120, 190, 240), (10, 60, 120))
    draw = ImageDraw.Draw(image)
    for row in range(12):
        y = h * 0.45 + row * 24
        shade = 200 - row * 12
        for x in range(-40, w + 40, 80):
            draw.arc((x, y, x + 80, y + 30), 200, 340, fill=(shade, shade + 30, 255), width=3)
    return image.filter(ImageFilter.SMOOTH)


def tall_checker() -> Image.Image:
    """Portrait: a teal/cream checkerboard under a radial vignette."""
    w, h = 600, 800
    tile = 50
    image = Image.new("RGB", (w, h), (240, 230, 200))
    draw = ImageDraw.Draw(image)
    for ty in range(0, h, tile):
        for tx in range(0, w, tile):
            if (tx // tile + ty // tile) % 2:
                draw.rectangle((tx, ty, tx + tile - 1, ty + tile - 1), fill=(20, 130, 130))
    vignette = Image.radial_gradient("L").resize((w, h))
    return Image.composite(
        Image.new("RGB", (w, h), (10, 20, 30)),
        image,
        vignette.point(lambda v: min(255, max(0, (v - 90) * 2))),
    )


def night_sky() -> Image.Image:
    """Stars (fixed seed) over a dark gradient, and a crescent moon."""
    w, h = 800, 600
    rng = random.Random(20240501)
    image = vertical_gradient((w, h), (5, 10, 35), (40, 30, 90))
    draw = ImageDraw.Draw(image)
    for _ in range(260):
        x, y = rng.randrange(w), rng.randrange(h)
        r = rng.choice((1, 1, 1, 2))
        v = rng.randrange(170, 256)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=(v, v, min(255, v + 20)))
    draw.ellipse((560, 90, 700, 230), fill=(250, 240, 200))
    draw.ellipse((590, 70, 730, 210), fill=(12, 16, 45))
    return image


def flat_shapes() -> Image.Image:
    """Flat-colour geometric shapes (a PNG: flat colour compresses well)."""
    w, h = 640, 480
    image = Image.new("RGB", (w, h), (245, 240, 230))
    draw = ImageDraw.Draw(image)
    draw.rectangle((40, 120, 260, 340), fill=(230, 80, 70))
    draw.ellipse((230, 90, 470, 330), fill=(60, 140, 220))
    draw.polygon([(420, 380), (600, 380), (510, 200)], fill=(250, 200, 50))
    draw.regular_polygon((150, 400, 50), 6, fill=(70, 170, 110))
    draw.line((0, 60, w, 60), fill=(40, 40, 40), width=6)
    return image


def bouncing_ball_frames() -> list[Image.Image]:
    """An animated seed: a ball bouncing over a striped floor, 24 frames, one palette."""
    w, h, count = 400, 300, 24
    backdrop = vertical_gradient((w, h), (120, 200, 235), (250, 240, 210))
    draw = ImageDraw.Draw(backdrop)
    for x in range(0, w, 40):
        draw.rectangle((x, h * 0.78, x + 19, h), fill=(90, 150, 90))
        draw.rectangle((x + 20, h * 0.78, x + 39, h), fill=(70, 120, 70))
    frames = []
    for i in range(count):
        t = i / count
        x = 40 + (w - 120) * t
        y = h * 0.72 - 150 * abs(1 - 2 * ((2 * t) % 1))  # two bounces per loop
        frame = backdrop.copy()
        ImageDraw.Draw(frame).ellipse((x, y - 40, x + 40, y), fill=(220, 70, 50))
        frames.append(frame)
    palette = frames[0].quantize(128)
    return [f.quantize(palette=palette, dither=Image.Dither.NONE) for f in frames]


def save_animated_gif(path: Path, frames: list[Image.Image]) -> None:
    frames[0].save(path, "GIF", save_all=True, append_images=frames[1:], duration=60, loop=0)


SEEDS: list[tuple[str, str, str, Callable[[], Image.Image]]] = [
    ("sunset-hills", "Sunset hills", "sunset-hills.jpg", sunset),
    ("ocean-waves", "Ocean waves", "ocean-waves.jpg", ocean),
    ("tall-checker", "Tall checkerboard", "tall-checker.jpg", tall_checker),
    ("night-sky", "Night sky", "night-sky.jpg", night_sky),
    ("flat-shapes", "Flat shapes", "flat-shapes.png", flat_shapes),
]


# Default text boxes a seed carries as data (the others use the classic top/bottom).
LAYOUTS: dict[str, list[dict[str, object]]] = {
    "tall-checker": [
        {"x": 0.03, "y": 0.02, "width": 0.94, "height": 0.18, "valign": "top"},
        {"x": 0.03, "y": 0.41, "width": 0.94, "height": 0.18},
        {"x": 0.03, "y": 0.80, "width": 0.94, "height": 0.18, "valign": "bottom"},
    ],
}


def main() -> int:
    DEST.mkdir(parents=True, exist_ok=True)
    listing: list[dict[str, object]] = []
    for seed_id, name, file, make in SEEDS:
        image = make()
        path = DEST / file
        if file.endswith(".png"):
            image.save(path, "PNG", optimize=True)
            content_type = "image/png"
        else:
            image.save(path, "JPEG", quality=85, optimize=True)
            content_type = "image/jpeg"
        entry: dict[str, object] = {
            "id": seed_id,
            "name": name,
            "file": file,
            "content_type": content_type,
        }
        if seed_id in LAYOUTS:
            entry["layout"] = LAYOUTS[seed_id]
        listing.append(entry)
        print(f"{path.relative_to(ROOT)}: {image.width}x{image.height}, {path.stat().st_size} B")
    frames = bouncing_ball_frames()
    path = DEST / "bouncing-ball.gif"
    save_animated_gif(path, frames)
    listing.append(
        {
            "id": "bouncing-ball",
            "name": "Bouncing ball (animated)",
            "file": "bouncing-ball.gif",
            "content_type": "image/gif",
        }
    )
    print(f"{path.relative_to(ROOT)}: {len(frames)} frames, {path.stat().st_size} B")
    (DEST / "seeds.json").write_text(json.dumps(listing, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Golden images: the layout model drawn as it was approved (tests/golden/*.png).

Compared with a small perceptual tolerance (FreeType or zlib versions may move an edge
pixel), regenerated with ``make golden-update`` when fonts or drawing change on purpose.
"""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageChops, ImageFilter, ImageStat

from tests.golden.cases import CASES, path_of, render_case

pytestmark = pytest.mark.unit

MAX_MEAN_DIFF = 1.5
"""Mean absolute difference per channel (0..255) after a 1 px blur."""
MAX_BAD_FRACTION = 0.004
"""Share of pixels allowed to differ by more than 48 after the blur."""


def perceptual_diff(a: Image.Image, b: Image.Image) -> tuple[float, float]:
    blur = ImageFilter.GaussianBlur(1)
    diff = ImageChops.difference(a.convert("RGB").filter(blur), b.convert("RGB").filter(blur))
    mean = sum(ImageStat.Stat(diff).mean) / 3
    worst = diff.convert("L").point(lambda v: 255 if v > 48 else 0)
    bad = ImageStat.Stat(worst).mean[0] / 255
    return mean, bad


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(name: str) -> None:
    expected_path = path_of(name)
    assert expected_path.exists(), f"missing {expected_path.name}: run make golden-update"
    expected = Image.open(expected_path)
    actual = Image.open(io.BytesIO(render_case(name)))
    assert actual.size == expected.size
    mean, bad = perceptual_diff(actual, expected)
    hint = "if the change is intended, run make golden-update and look at the images"
    assert mean <= MAX_MEAN_DIFF, f"{name}: mean diff {mean:.2f}; {hint}"
    assert bad <= MAX_BAD_FRACTION, f"{name}: {bad:.2%} of pixels far off; {hint}"


def test_the_comparison_catches_a_moved_caption() -> None:
    data = render_case("classic")
    image = Image.open(io.BytesIO(data)).convert("RGB")
    mean, bad = perceptual_diff(image, ImageChops.offset(image, 0, 6))
    assert mean > MAX_MEAN_DIFF or bad > MAX_BAD_FRACTION

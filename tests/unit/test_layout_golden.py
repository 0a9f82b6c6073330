"""Golden images: the layout model drawn as it was approved (tests/golden/*.png).

Compared with a small perceptual tolerance (FreeType or zlib versions may move an edge
pixel), over the whole image and, separately, over each caption box, so that a small
glyph or colour change inside one caption is a large share of that box's pixels.
Regenerated with ``make golden-update`` when fonts or drawing change on purpose.
"""

from __future__ import annotations

import io

import pytest
from memeforge_common.models import RenderSpec, TextBox
from memeforge_renderer.engine import render
from PIL import Image, ImageChops, ImageFilter, ImageStat

from tests.golden.cases import CASES, backdrop, path_of, render_case

pytestmark = pytest.mark.unit

MAX_MEAN_DIFF = 1.5
"""Mean absolute difference per channel (0..255) after a 1 px blur."""
MAX_BAD_FRACTION = 0.004
"""Share of pixels allowed to differ by more than 48 after the blur."""


MAX_BOX_MEAN_DIFF = 1.5
"""The same per caption box: its share of changed pixels is far larger than the image's."""
MAX_BOX_BAD_FRACTION = 0.004


def perceptual_diff(
    a: Image.Image, b: Image.Image, region: tuple[int, int, int, int] | None = None
) -> tuple[float, float]:
    blur = ImageFilter.GaussianBlur(1)
    diff = ImageChops.difference(a.convert("RGB").filter(blur), b.convert("RGB").filter(blur))
    if region is not None:
        diff = diff.crop(region)
    mean = sum(ImageStat.Stat(diff).mean) / 3
    worst = diff.convert("L").point(lambda v: 255 if v > 48 else 0)
    bad = ImageStat.Stat(worst).mean[0] / 255
    return mean, bad


def box_regions(spec: RenderSpec, size: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    """Each caption box in pixels, clipped to the image (rotated boxes: their bounds)."""
    w, h = size
    regions = []
    for box in spec.boxes:
        grow = 0.25 if box.rotation else 0.0  # a rotated box reaches past its frame
        x0 = max(0, round((box.x - grow * box.width) * w))
        y0 = max(0, round((box.y - grow * box.height) * h))
        x1 = min(w, round((box.x + (1 + grow) * box.width) * w))
        y1 = min(h, round((box.y + (1 + grow) * box.height) * h))
        regions.append((x0, y0, x1, y1))
    return regions


def box_diffs(
    actual: Image.Image, expected: Image.Image, spec: RenderSpec
) -> list[tuple[float, float]]:
    return [perceptual_diff(actual, expected, r) for r in box_regions(spec, actual.size)]


def within_tolerance(actual: Image.Image, expected: Image.Image, spec: RenderSpec) -> bool:
    mean, bad = perceptual_diff(actual, expected)
    if mean > MAX_MEAN_DIFF or bad > MAX_BAD_FRACTION:
        return False
    return all(
        m <= MAX_BOX_MEAN_DIFF and b <= MAX_BOX_BAD_FRACTION
        for m, b in box_diffs(actual, expected, spec)
    )


def _variant(spec: RenderSpec, index: int, **changes: object) -> RenderSpec:
    boxes = list(spec.boxes)
    boxes[index] = TextBox.model_validate(boxes[index].model_dump() | changes)
    return spec.model_copy(update={"boxes": tuple(boxes)})


def _image(spec: RenderSpec) -> Image.Image:
    return Image.open(io.BytesIO(render(backdrop(), spec).data)).convert("RGB")


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
    for i, (box_mean, box_bad) in enumerate(box_diffs(actual, expected, CASES[name]())):
        assert box_mean <= MAX_BOX_MEAN_DIFF, f"{name} box {i}: mean {box_mean:.2f}; {hint}"
        assert box_bad <= MAX_BOX_BAD_FRACTION, f"{name} box {i}: {box_bad:.2%} off; {hint}"


def test_the_comparison_catches_a_moved_caption() -> None:
    data = render_case("classic")
    image = Image.open(io.BytesIO(data)).convert("RGB")
    mean, bad = perceptual_diff(image, ImageChops.offset(image, 0, 6))
    assert mean > MAX_MEAN_DIFF or bad > MAX_BAD_FRACTION


def test_the_comparison_catches_a_one_letter_change() -> None:
    spec = CASES["classic"]()
    changed = _variant(spec, 1, text="write a golden text")
    # the same font size: only one glyph differs, nothing is re-fitted
    sizes = [render(backdrop(), s).report["boxes"][1]["font_size"] for s in (spec, changed)]
    assert sizes[0] == sizes[1]
    regions = box_diffs(_image(changed), _image(spec), spec)
    assert not within_tolerance(_image(changed), _image(spec), spec)
    # Not only just: the changed box is several times over its limit.
    assert regions[1][1] > 3 * MAX_BOX_BAD_FRACTION, regions


def test_the_comparison_catches_a_yellow_to_orange_caption() -> None:
    spec = CASES["styles"]()
    changed = _variant(spec, 0, color="#ff8800")
    regions = box_diffs(_image(changed), _image(spec), spec)
    assert not within_tolerance(_image(changed), _image(spec), spec)
    assert regions[0][0] > 2 * MAX_BOX_MEAN_DIFF or regions[0][1] > 3 * MAX_BOX_BAD_FRACTION

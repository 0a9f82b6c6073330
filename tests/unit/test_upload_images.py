"""The api's upload check (memeforge_api.images): accepted decoders only, JPEG verified at
reduced scale, and the same typed errors as before."""

from __future__ import annotations

import io

import pytest
from memeforge_api.images import InvalidImage, inspect_image
from PIL import Image

pytestmark = pytest.mark.unit


def _encoded(fmt: str, size: tuple[int, int] = (1600, 1200)) -> bytes:
    out = io.BytesIO()
    image = Image.effect_noise(size, 60).convert("RGB")
    image.save(out, fmt)
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF"])
def test_accepted_formats_verify(fmt: str) -> None:
    """README "Upload your own template (JPEG, PNG, WebP or GIF ...)"."""
    facts = inspect_image(_encoded(fmt), max_pixels=10**7)
    assert (facts.width, facts.height) == (1600, 1200)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_data_fails_even_at_reduced_scale(fmt: str) -> None:
    data = _encoded(fmt)
    with pytest.raises(InvalidImage) as err:
        inspect_image(data[: len(data) // 2], max_pixels=10**7)
    assert err.value.code == "invalid-image"


def test_a_recognised_other_format_is_unsupported_not_invalid() -> None:
    with pytest.raises(InvalidImage) as err:
        inspect_image(_encoded("BMP", (64, 64)), max_pixels=10**7)
    assert err.value.code == "unsupported-image-format"
    assert "BMP" in err.value.detail
    with pytest.raises(InvalidImage) as junk:
        inspect_image(b"definitely not an image", max_pixels=10**7)
    assert junk.value.code == "invalid-image"


def test_too_many_pixels_is_refused_from_the_header() -> None:
    """docs/architecture.md "Limits": source pixels at upload."""
    with pytest.raises(InvalidImage) as err:
        inspect_image(_encoded("JPEG"), max_pixels=1000)
    assert err.value.code == "image-too-large"

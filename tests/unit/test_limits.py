"""One definition per limit: the api's body and the workers' models refuse the same input."""

from __future__ import annotations

import json

import pytest
from memeforge_api.schemas import CreateMeme
from memeforge_common.items import from_dynamo, new_item, to_dynamo
from memeforge_common.limits import MAX_BOXES, MAX_CAPTION_CHARS
from memeforge_common.models import (
    BoxReport,
    LayoutReport,
    MemeResult,
    RenderJob,
    RenderSpec,
    RequestedMeme,
    TextBox,
    classic_boxes,
)
from memeforge_consumer.dispatch import SPEC_BREAKS_LIMITS, invalid_spec
from pydantic import ValidationError

pytestmark = pytest.mark.unit

MEME_ID = "0123456789abcdef0123456789abcdef"
DYNAMODB_ITEM_LIMIT = 400 * 1024


def _box(text: str) -> dict[str, object]:
    return {"text": text, "x": 0.0, "y": 0.0, "width": 1.0, "height": 0.5}


def test_an_over_long_caption_is_refused_by_the_api_body_and_the_worker_models() -> None:
    """docs/architecture.md invariants 7 and 11: one limit, refused at the door."""
    too_long = "x" * (MAX_CAPTION_CHARS + 1)
    for body in (
        {"template_id": "drake", "boxes": [_box(too_long)]},
        {"template_id": "drake", "top": too_long},
        {"template_id": "drake", "captions": [too_long]},
    ):
        with pytest.raises(ValidationError, match="at most 500 characters"):
            CreateMeme.model_validate(body)
    with pytest.raises(ValidationError, match="at most 500 characters"):
        RenderSpec.model_validate({"boxes": [_box(too_long)]})
    job = {
        "meme_id": MEME_ID,
        "template_key": "templates/drake",
        "template_etag": '"e"',
        "spec": {"boxes": [_box(too_long)]},
    }
    with pytest.raises(ValidationError, match="at most 500 characters"):
        RenderJob.model_validate(job)
    assert CreateMeme.model_validate({"template_id": "drake", "top": "x" * MAX_CAPTION_CHARS})


def test_create_meme_takes_render_spec_output_options_with_their_bounds() -> None:
    body = CreateMeme.model_validate(
        {"template_id": "drake", "top": "hi", "format": "png", "quality": 70, "max_side": 300}
    )
    spec = body.render_spec()
    assert (spec.format, spec.quality, spec.max_side, spec.thumbnail_side) == ("png", 70, 300, None)
    for field, value in (("quality", 96), ("max_side", 15), ("thumbnail_side", 1025)):
        with pytest.raises(ValidationError):
            CreateMeme.model_validate({"template_id": "drake", "top": "hi", field: value})
        with pytest.raises(ValidationError):
            RenderSpec.model_validate({"boxes": [], field: value})


def test_the_largest_meme_allowed_fits_a_dynamodb_item() -> None:
    """docs/architecture.md "Limits": item size < 400 KB.
    16 boxes of 500 four-byte emoji, with a report repeating every line: < 400 KB."""
    text = "\U0001f600" * MAX_CAPTION_CHARS
    spec = RenderSpec(boxes=tuple(TextBox.model_validate(_box(text)) for _ in range(MAX_BOXES)))
    report = LayoutReport(
        boxes=tuple(BoxReport(font_size=10, lines=(text,), truncated=True) for _ in spec.boxes),
        width=1,
        height=1,
        bytes=1,
    )
    item = new_item(MEME_ID, "drake", spec).model_copy(
        update={
            "result": MemeResult(
                key="memes/x.jpg",
                content_type="image/jpeg",
                bytes=1,
                width=1,
                height=1,
                report=report,
            )
        }
    )
    record = to_dynamo(item)
    # An upper bound of DynamoDB's measure (name + UTF-8 value bytes, plus JSON framing).
    size = sum(
        len(name.encode()) + len(json.dumps(value, ensure_ascii=False).encode())
        for name, value in record.items()
    )
    assert size < DYNAMODB_ITEM_LIMIT


def test_a_stored_spec_over_the_limits_reads_as_none_and_fails_as_invalid_spec() -> None:
    """README "Permanent errors fail fast": an invalid spec ends FAILED."""
    record = to_dynamo(new_item(MEME_ID, "drake", RenderSpec(boxes=classic_boxes("a", "b"))))
    record["spec"]["S"] = json.dumps({"boxes": [_box("x" * 600)]})  # written under old limits
    item = from_dynamo(record)
    assert item.spec is None
    assert RequestedMeme.of(item) is None  # no request can carry it: the consumer fails it
    assert SPEC_BREAKS_LIMITS.reason == "invalid_spec"


def test_a_spec_without_text_fails_as_empty_caption() -> None:
    item = new_item(MEME_ID, "drake", RenderSpec(boxes=(TextBox.model_validate(_box(" ")),)))
    assert item.spec is not None
    failure = invalid_spec(item.spec)
    assert failure is not None
    assert failure.reason == "empty_caption"

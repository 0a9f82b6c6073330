from __future__ import annotations

import json

import pytest
from memeforge_common.items import from_dynamo, new_item, to_dynamo
from memeforge_common.models import (
    MemeResult,
    MemeState,
    Notify,
    RenderJob,
    RenderSpec,
    RequestMessage,
    TextBox,
    classic_boxes,
    output_key,
    slugify,
)
from pydantic import ValidationError

pytestmark = pytest.mark.unit

MEME_ID = "0123456789abcdef0123456789abcdef"


def test_classic_layout_skips_empty_captions() -> None:
    assert [b.y for b in classic_boxes("top", "bottom")] == [0.02, 0.76]
    assert len(classic_boxes("top", "  ")) == 1
    assert classic_boxes("", "") == ()


def test_text_box_must_stay_inside_the_image() -> None:
    with pytest.raises(ValidationError):
        TextBox(text="x", x=1.2, y=0, width=0.5, height=0.5)
    with pytest.raises(ValidationError):
        TextBox(text="x", x=0, y=0, width=0, height=0.5)


def test_messages_are_versioned_and_round_trip() -> None:
    """docs/architecture.md invariant 2: messages are versioned models."""
    body = RequestMessage(meme_id=MEME_ID).model_dump_json()
    assert json.loads(body) == {"v": 1, "kind": "meme.requested", "meme_id": MEME_ID}
    assert RequestMessage.model_validate_json(body).meme_id == MEME_ID


def test_a_request_carries_what_the_consumer_needs_of_its_item() -> None:
    """docs/architecture.md "Flow" 2: the consumer reads no item for a request."""
    spec = RenderSpec(boxes=classic_boxes("a", "b"))
    notify = Notify(callback_url="https://hooks.example.com/m")
    item = new_item(MEME_ID, "drake", spec, tenant="acme", notify=notify, counted=True)
    request = RequestMessage.model_validate_json(RequestMessage.of(item).model_dump_json())
    assert request.meme_id == MEME_ID
    assert request.meme is not None
    assert (request.meme.template_id, request.meme.spec, request.meme.tenant) == (
        "drake",
        spec,
        "acme",
    )
    assert (request.meme.notify, request.meme.in_flight_slot) == (notify, "acme")
    # An item whose stored spec no longer reads: the id alone (the consumer reads it).
    unreadable = item.model_copy(update={"spec": None})
    assert json.loads(RequestMessage.of(unreadable).model_dump_json()) == {
        "v": 1,
        "kind": "meme.requested",
        "meme_id": MEME_ID,
    }


def test_unknown_message_version_is_rejected() -> None:
    """docs/architecture.md invariant 2 and README "unknown version" is poison."""
    with pytest.raises(ValidationError):
        RequestMessage.model_validate_json(json.dumps({"v": 99, "meme_id": MEME_ID}))


def test_render_job_reads_only_template_keys_and_names_no_output_key() -> None:
    """docs/architecture.md invariant 9: "nothing in a message names where to write"."""
    spec = RenderSpec(boxes=classic_boxes("a", "b"))
    bad_keys = (
        "../secrets",
        "memes/acme/" + MEME_ID + ".jpg",
        "templates/../memes/x",
        "templates/acme/../x",
        "templates/drake",
        "templates/",
    )
    for key in bad_keys:
        with pytest.raises(ValidationError):
            RenderJob(meme_id=MEME_ID, template_key=key, template_etag='"x"', spec=spec)
    with pytest.raises(ValidationError):  # the tenant becomes part of output keys
        RenderJob(
            meme_id=MEME_ID,
            template_key="templates/public/drake",
            template_etag='"x"',
            spec=spec,
            tenant="../acme",
        )
    job = RenderJob(
        meme_id=MEME_ID,
        template_key="templates/public/drake",
        template_etag='"x"',
        spec=spec,
        tenant="acme",
    )
    assert (job.template_id, job.tenant) == ("drake", "acme")
    assert "output_key" not in json.loads(job.model_dump_json())
    # An older consumer's job still parses; its output_key is never used (Renderer derives it).
    old = json.loads(job.model_dump_json()) | {"output_key": "memes/someone-else.jpg"}
    assert RenderJob.model_validate(old).meme_id == MEME_ID


def test_output_key_is_deterministic() -> None:
    """README "output keys are deterministic"."""
    assert output_key(MEME_ID) == output_key(MEME_ID) == f"memes/{MEME_ID}.jpg"
    assert output_key(MEME_ID, tenant="acme", thumbnail=True) == f"memes/acme/{MEME_ID}.thumb.jpg"


def test_item_round_trips_through_dynamodb_format() -> None:
    item = new_item(MEME_ID, "drake", RenderSpec(boxes=classic_boxes("top ü", "bottom")))
    done = item.model_copy(
        update={
            "state": MemeState.DONE,
            "result": MemeResult(
                key="memes/x.jpg", content_type="image/jpeg", bytes=10, width=2, height=3
            ),
        }
    )
    assert from_dynamo(to_dynamo(done)) == done


@pytest.mark.parametrize(
    ("name", "slug"),
    [("Distracted Boyfriend", "distracted-boyfriend"), ("  Ünïcode!! ", "n-code"), ("---", "")],
)
def test_slugify(name: str, slug: str) -> None:
    assert slugify(name) == slug

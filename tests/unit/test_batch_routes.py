"""The batch body's own rules (its OpenAPI problems: tests/unit/test_openapi.py)."""

from __future__ import annotations

import pytest
from memeforge_api.schemas import CreateBatch
from memeforge_common.limits import MAX_BATCH_ITEMS
from pydantic import ValidationError

pytestmark = pytest.mark.unit


def test_a_batch_holds_one_to_the_cap_items_and_no_per_item_callbacks() -> None:
    item = {"template_id": "any", "top": "a"}
    assert len(CreateBatch.model_validate({"items": [item] * MAX_BATCH_ITEMS}).items) == 500
    for items in ([], [item] * (MAX_BATCH_ITEMS + 1)):
        with pytest.raises(ValidationError):
            CreateBatch.model_validate({"items": items})
    for announce in ({"notify_email": "a@b.example"}, {"callback_url": "https://a.example/"}):
        with pytest.raises(ValidationError, match=r"items\.1\." + next(iter(announce))):
            CreateBatch.model_validate({"items": [item, item | announce]})


def test_the_schema_of_a_batch_item_has_no_per_item_announcements() -> None:
    # Rejected by the schema itself, so clients (and make fuzz) see the rule in OpenAPI.
    item = CreateBatch.model_json_schema()["$defs"]["MemeBody"]
    assert item["additionalProperties"] is False
    assert "template_id" in item["properties"]
    assert not {"callback_url", "notify_email"} & set(item["properties"])

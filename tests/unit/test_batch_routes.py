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
    with pytest.raises(ValidationError, match=r"items\[1\]"):
        CreateBatch.model_validate({"items": [item, item | {"notify_email": "a@b.example"}]})

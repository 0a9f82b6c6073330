"""The batch routes' contract as OpenAPI publishes it, and the batch body's own rules."""

from __future__ import annotations

import pytest
from memeforge_api.app import create_app
from memeforge_api.problems import PROBLEM_JSON
from memeforge_api.schemas import CreateBatch
from memeforge_common.limits import MAX_BATCH_ITEMS
from memeforge_common.settings import Settings
from pydantic import ValidationError

pytestmark = pytest.mark.unit


def test_every_batch_route_documents_its_problems_as_problem_json() -> None:
    paths = create_app(Settings()).openapi()["paths"]
    expected = {
        ("/batches", "post"): {"401", "403", "404", "409", "413", "422", "429", "503"},
        ("/batches/{batch_id}", "get"): {"401", "403", "404", "429"},
        ("/batches/{batch_id}/items", "get"): {"400", "401", "403", "404", "429"},
        ("/batches/{batch_id}/archive", "get"): {"401", "403", "404", "409", "429"},
    }
    for (path, method), statuses in expected.items():
        responses = paths[path][method]["responses"]
        for status in statuses:
            assert PROBLEM_JSON in responses[status]["content"], (path, status)


def test_a_batch_holds_one_to_the_cap_items_and_no_per_item_callbacks() -> None:
    item = {"template_id": "any", "top": "a"}
    assert len(CreateBatch.model_validate({"items": [item] * MAX_BATCH_ITEMS}).items) == 500
    for items in ([], [item] * (MAX_BATCH_ITEMS + 1)):
        with pytest.raises(ValidationError):
            CreateBatch.model_validate({"items": items})
    with pytest.raises(ValidationError, match=r"items\[1\]"):
        CreateBatch.model_validate({"items": [item, item | {"notify_email": "a@b.example"}]})

"""The OpenAPI contract (README "OpenAPI"): every error a route can answer is documented as
problem+json with the one shared Problem schema, and POST /memes states its text modes."""

from __future__ import annotations

import re
from typing import Any

import jsonschema
import pytest
from memeforge_api.app import create_app
from memeforge_api.problems import PROBLEM_JSON, problem_body
from memeforge_api.schemas import CreateMeme
from memeforge_common.limits import VISIBLE_CHAR_PATTERN, has_visible_text
from memeforge_common.settings import Settings
from pydantic import ValidationError

pytestmark = pytest.mark.unit

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
AUTHENTICATED = {"401", "403", "429", "503"}
# The problems each route can answer beyond AUTHENTICATED and 422 (see the routes).
EXTRA = {
    ("get", "/templates"): {"400"},
    ("post", "/templates"): {"400", "409", "413", "415"},
    ("get", "/templates/{template_id}"): {"404"},
    ("get", "/templates/{template_id}/image"): {"404"},
    ("delete", "/templates/{template_id}"): {"404"},
    ("post", "/templates/uploads"): set(),
    ("post", "/templates/uploads/{upload_id}/complete"): {"400", "404", "409", "413", "415"},
    ("get", "/memes"): {"400"},
    ("post", "/memes"): {"400", "404", "409", "413"},
    ("get", "/memes/{meme_id}"): {"404"},
    ("get", "/memes/{meme_id}/events"): {"404"},
    ("get", "/memes/{meme_id}/image"): {"404", "409"},
    ("get", "/memes/{meme_id}/thumbnail"): {"404", "409"},
    ("delete", "/memes/{meme_id}"): {"404", "409"},
    ("post", "/batches"): {"400", "404", "409", "413"},
    ("get", "/batches/{batch_id}"): {"404"},
    ("get", "/batches/{batch_id}/items"): {"400", "404"},
    ("get", "/batches/{batch_id}/archive"): {"404", "409"},
}


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    document: dict[str, Any] = create_app(Settings()).openapi()
    return document


def operations(schema: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(m, p): op for p, ops in schema["paths"].items() for m, op in ops.items()}


def test_every_error_of_every_route_is_problem_json_with_the_shared_schema(
    schema: dict[str, Any],
) -> None:
    ops = operations(schema)
    assert set(ops) == set(EXTRA) | {("get", "/healthz")}
    for (method, path), op in ops.items():
        errors = {status for status in op["responses"] if status[0] in "45"}
        expected = set() if path == "/healthz" else AUTHENTICATED | {"422"} | EXTRA[(method, path)]
        assert errors == expected, (method, path)
        for status in errors:
            assert op["responses"][status]["content"] == {PROBLEM_JSON: {"schema": PROBLEM_REF}}
    assert "HTTPValidationError" not in schema["components"]["schemas"]


def test_the_problem_schema_describes_the_bodies_the_api_sends(schema: dict[str, Any]) -> None:
    problem = schema["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "code", "instance"}
    body = problem_body(429, "rate-limited", "Too many", "retry in 2 s", instance="/memes")
    jsonschema.validate(body | {"errors": []}, problem)  # extra members are allowed
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"title": "no code"}, problem)


def test_post_memes_states_exactly_one_text_mode_in_its_schema(schema: dict[str, Any]) -> None:
    body = schema["components"]["schemas"]["CreateMeme"]
    assert [mode["title"] for mode in body["oneOf"]] == ["top/bottom", "captions", "boxes"]
    box = {"x": 0, "y": 0, "width": 1, "height": 1, "text": "hi"}
    valid = [
        {"template_id": "t", "top": "hi"},
        {"template_id": "t", "top": "", "bottom": "hi"},
        {"template_id": "t", "captions": ["", "hi"]},
        {"template_id": "t", "boxes": [box]},
    ]
    invalid = [
        {"template_id": "t"},
        {"template_id": "t", "top": "  "},
        {"template_id": "t", "top": "", "captions": ["hi"]},
        {"template_id": "t", "captions": ["hi"], "boxes": [box]},
        {"template_id": "t", "captions": [" "]},
        {"template_id": "t", "boxes": [box | {"text": ""}]},
    ]
    modes = {"oneOf": body["oneOf"]}
    for document in valid:
        jsonschema.validate(document, modes)
    for document in invalid:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(document, modes)


# Characters some regex dialect or str.strip() counts as space: Python's whitespace,
# ECMA-262's \s (what JSON Schema patterns use), and the C0/C1 controls.
_SPACE_LIKE = sorted(
    {chr(c) for c in range(0x3001) if chr(c).isspace() or c < 0x20 or 0x7F <= c <= 0xA0}
    | {"\u2028", "\u2029", "\u202f", "\u205f", "\u3000", "\ufeff", "\u200b"}
)


def test_blank_means_the_same_to_the_schema_and_to_the_api(schema: dict[str, Any]) -> None:
    # make fuzz found "\u001f": ECMA's \S matches it, Python's strip() drops it, so the
    # schema accepted a caption the api refused. The pattern now avoids every shorthand
    # class, whose meaning differs between dialects.
    assert not re.search(r"\\[sSwWdDbB]", VISIBLE_CHAR_PATTERN)
    modes = {"oneOf": schema["components"]["schemas"]["CreateMeme"]["oneOf"]}
    for char in [*_SPACE_LIKE, "a", "\u4e00", "\U0001f600"]:
        body = {"template_id": "t", "top": f" {char} "}
        try:
            CreateMeme.model_validate(body)
            api_accepts = True
        except ValidationError:
            api_accepts = False
        schema_accepts = jsonschema.Draft202012Validator(modes).is_valid(body)
        assert schema_accepts == api_accepts == has_visible_text(char), repr(char)
    assert not has_visible_text("".join(_SPACE_LIKE))

"""The api's request handling in-process: FastAPI's TestClient over in-memory fakes of the
stores and the publisher (the same routes run against the emulator in integration/).
The caller is a fixed principal of tenant ``acme`` (key checks: tests/integration)."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

import pytest
from botocore.exceptions import ClientError
from fastapi import FastAPI
from fastapi.testclient import TestClient
from memeforge_api.app import create_app
from memeforge_api.auth import Principal, authenticate
from memeforge_api.idempotency import Claim
from memeforge_api.watcher import Watcher
from memeforge_common.apikeys import Scope
from memeforge_common.endpoints import Endpoint
from memeforge_common.items import ItemExists, MemeStore, new_item
from memeforge_common.limits import MAX_CAPTION_CHARS
from memeforge_common.models import MemeItem, RenderSpec, RequestMessage, classic_boxes
from memeforge_common.settings import Settings
from memeforge_common.templates import TemplateInfo, decode_cursor, encode_cursor
from memeforge_common.tracing import trace_id

pytestmark = pytest.mark.unit

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
BOX = {"x": 0.0, "y": 0.0, "width": 1.0, "height": 0.5}
CALLER = Principal(key_id="k1", tenant="acme", scopes=frozenset(Scope))


@dataclass
class FakeMemes:
    items: dict[str, MemeItem] = field(default_factory=dict)

    async def create(self, item: MemeItem) -> None:
        if item.id in self.items:
            raise ItemExists(item.id)
        self.items[item.id] = item

    async def create_counted(self, item: MemeItem, in_flight_cap: int) -> None:
        await self.create(item)  # the cap itself: tests/integration/test_items.py

    async def get(self, meme_id: str, *, consistent: bool = True) -> MemeItem | None:
        return self.items.get(meme_id)


@dataclass
class FakeTemplates:
    async def head(self, template_id: str, tenant: str) -> TemplateInfo | None:
        return None

    async def find(self, template_id: str, tenant: str) -> TemplateInfo | None:
        return None

    async def page(
        self, tenant: str, *, limit: int, cursor: str | None
    ) -> tuple[list[TemplateInfo], str | None]:
        if cursor:
            decode_cursor(cursor)  # the store's own check
        return [], None


@dataclass
class FakePublisher:
    sent: list[tuple[RequestMessage, str]] = field(default_factory=list)

    def coming(self) -> contextlib.nullcontext[None]:
        return contextlib.nullcontext()

    async def publish(
        self, message: RequestMessage, traceparent: str, coming: object = None
    ) -> None:
        self.sent.append((message, traceparent))

    async def publish_batch(self, messages: Sequence[tuple[RequestMessage, str]]) -> set[int]:
        self.sent += messages
        return set()


class FakeOutputs:
    async def presigned_url(self, key: str, ttl_s: int) -> str:
        return f"https://s3.invalid/{key}"


@dataclass
class FakeEndpoints:
    endpoints: dict[str, Endpoint] = field(default_factory=dict)

    async def get(self, tenant: str) -> Endpoint | None:
        return self.endpoints.get(tenant)


class FakeIdempotency:
    async def claim(self, tenant: str, key: str, body_fingerprint: str, meme_id: str) -> Claim:
        return Claim(meme_id=meme_id, replay=False)


@dataclass
class Api:
    client: TestClient
    memes: FakeMemes
    published: FakePublisher
    endpoints: FakeEndpoints


@pytest.fixture
def api() -> Api:
    app: FastAPI = create_app(Settings())
    memes, published, endpoints = FakeMemes(), FakePublisher(), FakeEndpoints()
    # What the lifespan builds from AWS clients; TestClient without `with` skips it.
    app.state.settings = Settings()
    app.state.store = memes
    app.state.templates = FakeTemplates()
    app.state.requests = published
    app.state.outputs = FakeOutputs()
    app.state.idempotency = FakeIdempotency()
    app.state.endpoints = endpoints
    app.state.watcher = Watcher(cast(MemeStore, memes), max_waiters=10, max_calls_per_s=20)
    app.state.backlog = None
    app.dependency_overrides[authenticate] = lambda: CALLER
    return Api(TestClient(app), memes, published, endpoints)


def test_a_caption_over_the_limit_in_boxes_is_a_422_at_the_door(api: Api) -> None:
    """docs/architecture.md invariant 11: "the api refuses at the door"."""
    too_long = {"template_id": "drake", "boxes": [BOX | {"text": "x" * (MAX_CAPTION_CHARS + 1)}]}
    response = api.client.post("/memes", json=too_long)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "validation-failed"
    assert api.memes.items == {}
    assert api.published.sent == []


def test_a_valid_meme_is_stored_then_published_once_with_the_callers_trace(api: Api) -> None:
    body = {"template_id": "drake", "boxes": [BOX | {"text": "x" * MAX_CAPTION_CHARS}]}
    response = api.client.post("/memes", json=body, headers={"traceparent": PARENT})
    assert response.status_code == 202
    meme_id = response.json()["id"]
    [(message, trace)] = api.published.sent
    assert message.meme_id == meme_id
    assert trace_id(trace) == trace_id(PARENT) == trace_id(response.headers["traceparent"])
    assert api.memes.items[meme_id].traceparent == trace


def test_a_callback_url_needs_the_tenants_signing_secret(api: Api) -> None:
    """A webhook nobody could verify is refused at the door, not dropped at delivery."""
    body = {"template_id": "drake", "top": "a", "callback_url": "https://hooks.example/x"}
    response = api.client.post("/memes", json=body)
    assert response.status_code == 422
    assert response.json()["code"] == "webhook-not-configured"
    assert api.memes.items == {}

    api.endpoints.endpoints["acme"] = Endpoint("acme", secret="whsec_c2VjcmV0")
    response = api.client.post("/memes", json=body | {"notify_email": "me@example.com"})
    assert response.status_code == 202
    notify = api.memes.items[response.json()["id"]].notify
    assert notify is not None
    assert (notify.callback_url, notify.email) == ("https://hooks.example/x", "me@example.com")
    shown = response.json()
    assert (shown["callback_url"], shown["notify_email"]) == (notify.callback_url, notify.email)
    assert shown["deliveries"] == {}


def test_the_tenants_default_endpoint_applies_to_memes_that_name_none(api: Api) -> None:
    api.endpoints.endpoints["acme"] = Endpoint("acme", "whsec_c2VjcmV0", "https://acme.example/h")
    response = api.client.post("/memes", json={"template_id": "drake", "top": "a"})
    notify = api.memes.items[response.json()["id"]].notify
    assert notify is not None
    assert notify.callback_url == "https://acme.example/h"
    assert notify.email is None


@pytest.mark.parametrize(
    "field_value",
    [
        ("callback_url", "ftp://example.com/x"),
        ("callback_url", "https://"),
        ("callback_url", "https://example.com/" + "x" * 2048),
        ("notify_email", "not an address"),
        ("notify_email", "a@b.c, evil@example.com"),
    ],
)
def test_bad_notification_targets_are_a_422(api: Api, field_value: tuple[str, str]) -> None:
    api.endpoints.endpoints["acme"] = Endpoint("acme", secret="whsec_c2VjcmV0")
    name, value = field_value
    response = api.client.post("/memes", json={"template_id": "drake", "top": "a", name: value})
    assert response.status_code == 422
    assert response.json()["code"] == "validation-failed"


def test_a_meme_without_targets_carries_no_notify(api: Api) -> None:
    response = api.client.post("/memes", json={"template_id": "drake", "top": "a"})
    assert api.memes.items[response.json()["id"]].notify is None


@pytest.mark.parametrize(
    "bad",
    [
        "garbage",
        PARENT.upper(),
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        PARENT + "-" + "x" * 500,
    ],
)
def test_a_bad_traceparent_starts_a_new_trace_instead_of_being_refused(api: Api, bad: str) -> None:
    """README "Tracing": the api continues a traceparent "(or starts a trace)"."""
    response = api.client.post(
        "/memes", json={"template_id": "drake", "top": "hi"}, headers={"traceparent": bad}
    )
    assert response.status_code == 202
    [(_, trace)] = api.published.sent
    assert trace_id(trace) is not None
    assert trace_id(trace) != trace_id(PARENT)


def test_a_cursor_the_api_did_not_hand_out_is_a_400_invalid_cursor(api: Api) -> None:
    forged = (encode_cursor("own", "../memes"), encode_cursor("theirs", "tpl"))
    for junk in ("junk", "t1.%%%", "t1.Li4vbWVtZXM", *forged):
        response = api.client.get("/templates", params={"cursor": junk})
        assert (response.status_code, response.json()["code"]) == (400, "invalid-cursor")
    assert api.client.get("/templates").status_code == 200


def test_an_unreadable_upload_is_a_422_without_internal_details(api: Api) -> None:
    """docs/architecture.md invariant 10: error bodies carry no internals."""
    response = api.client.post(
        "/templates",
        data={"name": "notes"},
        files={"file": ("notes.png", b"just some text", "image/png")},
    )
    assert (response.status_code, response.json()["code"]) == (422, "invalid-image")
    assert "0x" not in response.text
    assert "BytesIO" not in response.text


def test_metrics_are_not_served_on_the_public_port(api: Api) -> None:
    """README "Metrics": "never on the api's public port"."""
    assert api.client.get("/metrics").status_code == 404


def test_the_openapi_schema_states_the_caption_limit(api: Api) -> None:
    schema = api.client.get("/openapi.json").json()["components"]["schemas"]
    assert schema["CreateMeme"]["properties"]["top"]["maxLength"] == MAX_CAPTION_CHARS
    assert schema["TextBox"]["properties"]["text"]["maxLength"] == MAX_CAPTION_CHARS


def test_a_put_item_retried_after_it_succeeded_still_answers_202_and_enqueues(
    api: Api,
) -> None:
    """The SDK retries a PutItem that timed out after DynamoDB wrote it; the retry's
    condition then fails. The item is ours: the api answers 202 and enqueues it once."""
    store = api.memes
    original = store.create

    async def written_then_refused(item: MemeItem) -> None:
        await original(item)
        raise ItemExists(item.id)

    store.create = written_then_refused  # type: ignore[method-assign]
    response = api.client.post("/memes", json={"template_id": "drake", "top": "hi"})
    assert response.status_code == 202
    assert [m.meme_id for m, _ in api.published.sent] == [response.json()["id"]]


def test_another_tenants_meme_is_a_404_like_one_that_never_existed(api: Api) -> None:
    theirs = new_item("a" * 32, "drake", RenderSpec(boxes=classic_boxes("a", "b")), tenant="other")
    api.memes.items[theirs.id] = theirs
    for path in ("", "?wait=1", "/events", "/image", "/thumbnail"):  # long-poll, SSE too
        response = api.client.get(f"/memes/{theirs.id}{path}")
        assert (response.status_code, response.json()["code"]) == (404, "meme-not-found")
    missing = api.client.get(f"/memes/{'b' * 32}")
    assert (missing.status_code, missing.json()["code"]) == (404, "meme-not-found")


def test_405_names_every_method_of_the_path_in_allow(api: Api) -> None:
    """Found by schemathesis (allow_header_conformance): Starlette named only the first
    route's methods (GET) where GET and DELETE share /memes/{id}."""
    response = api.client.request("OPTIONS", f"/memes/{'a' * 32}")
    assert response.status_code == 405
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["allow"] == "DELETE, GET"
    assert api.client.request("PUT", "/templates").headers["allow"] == "GET, POST"
    # A fixed path is its own resource, though /templates/{template_id} matches it too.
    assert api.client.request("OPTIONS", "/templates/uploads").headers["allow"] == "POST"
    assert api.client.request("PUT", "/templates/abc").headers["allow"] == "DELETE, GET"


def test_a_body_that_is_not_json_is_a_documented_400(api: Api) -> None:
    """Found by schemathesis (status_code_conformance): undocumented 400; now documented."""
    response = api.client.post(
        "/memes", content=b"\xa36\xff", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["code"] == "bad-request"
    documented = api.client.get("/openapi.json").json()["paths"]["/memes"]["post"]["responses"]
    assert "400" in documented


@pytest.mark.parametrize(
    "text",
    [
        {"top": "", "captions": ["hi"]},
        {"bottom": "hi", "boxes": [BOX | {"text": "hi"}]},
        {"captions": ["hi"], "boxes": None},
        {"top": " ", "bottom": "\t"},
    ],
)
def test_the_text_modes_are_told_apart_by_presence_like_the_schemas_oneof(
    api: Api, text: dict[str, object]
) -> None:
    response = api.client.post("/memes", json={"template_id": "drake", **text})
    assert response.status_code == 422
    assert api.memes.items == {}


def test_a_retry_whose_write_created_the_meme_enqueues_it(api: Api) -> None:
    """An Idempotency-Key retried after a 429 (the first attempt claimed the key but wrote
    nothing) is enqueued at once, not left to the sweeper."""

    class ClaimedEarlier:
        async def claim(self, tenant: str, key: str, fingerprint: str, meme_id: str) -> Claim:
            return Claim(meme_id="c" * 32, replay=True)

    api.client.app.state.idempotency = ClaimedEarlier()  # type: ignore[attr-defined]
    body = {"template_id": "drake", "top": "hi"}
    response = api.client.post("/memes", json=body, headers={"Idempotency-Key": "k"})
    assert response.status_code == 202
    assert "idempotent-replayed" not in response.headers
    assert [message.meme_id for message, _ in api.published.sent] == ["c" * 32]


def test_a_transaction_that_kept_losing_to_contention_is_a_503_not_a_client_error(
    api: Api,
) -> None:
    """After the store's own retries, a cancelled transaction is contention on the
    tenant's counter: 503 with Retry-After, not 400 invalid-request."""

    async def contended(item: MemeItem, in_flight_cap: int) -> None:
        error = {
            "Error": {"Code": "TransactionCanceledException"},
            "ResponseMetadata": {"HTTPStatusCode": 400},
        }
        raise ClientError(error, "TransactWriteItems")  # type: ignore[arg-type]

    api.memes.create_counted = contended  # type: ignore[method-assign]
    response = api.client.post("/memes", json={"template_id": "drake", "top": "hi"})
    assert response.status_code == 503
    assert response.json()["code"] == "aws-unavailable"
    assert "retry-after" in response.headers

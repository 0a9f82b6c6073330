"""Tenants are walls: two tenants' keys against one api (in-process) and the real emulator."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from memeforge_api.app import create_app
from memeforge_common.apikeys import ALL_SCOPES, KeyStore
from memeforge_common.aws import AwsClients
from memeforge_common.items import MemeStore
from memeforge_common.models import MemeResult, MemeState
from memeforge_common.settings import Settings
from memeforge_common.templates import TemplateStore
from memeforge_common.tenancy import PUBLIC_TENANT

from tests.support.images import gradient

pytestmark = pytest.mark.integration


@pytest.fixture
async def clients(
    resources: Settings, aws: AwsClients
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient, MemeStore]]:
    """(tenant A's client, tenant B's client, the meme store)."""
    app = create_app(resources)
    async with app.router.lifespan_context(app):
        keys = KeyStore(aws.dynamodb, resources.table)
        a = await keys.create("tenant-a", "a", ALL_SCOPES)
        b = await keys.create("tenant-b", "b", ALL_SCOPES)
        transport = httpx.ASGITransport(app=app)
        async with (
            httpx.AsyncClient(
                transport=transport,
                base_url="http://api",
                headers={"Authorization": f"Bearer {a.token}"},
            ) as client_a,
            httpx.AsyncClient(
                transport=transport,
                base_url="http://api",
                headers={"Authorization": f"Bearer {b.token}"},
            ) as client_b,
        ):
            yield client_a, client_b, app.state.store


async def create(client: httpx.AsyncClient, text: str, **headers: str) -> dict[str, object]:
    response = await client.post(
        "/memes", json={"template_id": "any", "top": text}, headers=headers
    )
    assert response.status_code == 202, response.text
    body: dict[str, object] = response.json()
    return body


async def finish(store: MemeStore, meme_id: str, key: str) -> None:
    """Drive an item to DONE as the workers would (no workers run in this test)."""
    assert await store.transition(meme_id, MemeState.QUEUED)
    assert await store.transition(meme_id, MemeState.RENDERING)
    result = MemeResult(
        key=key, content_type="image/jpeg", bytes=1, width=1, height=1, thumbnail_key=key
    )
    item = await store.get(meme_id)
    assert item is not None
    assert await store.transition(meme_id, MemeState.DONE, result=result, slot=item.in_flight_slot)


async def test_another_tenants_meme_is_not_found_by_any_route(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient, MemeStore],
) -> None:
    a, b, store = clients
    meme = await create(a, "mine")
    meme_id = str(meme["id"])
    await finish(store, meme_id, f"memes/tenant-a/{meme_id}.jpg")
    for path in ("", "/image", "/thumbnail", "/events"):
        assert (await a.get(f"/memes/{meme_id}{path}")).status_code in (200, 307), path
        theirs = await b.get(f"/memes/{meme_id}{path}")
        assert theirs.status_code == 404, path
        assert theirs.json()["code"] == "meme-not-found"
    assert (await b.delete(f"/memes/{meme_id}")).status_code == 404
    assert (await a.get(f"/memes/{meme_id}")).status_code == 200  # still there
    # Existence does not leak: the answer has the shape of one for an id nobody used.
    never = (await b.get(f"/memes/{'0' * 32}")).json()
    hidden = (await b.get(f"/memes/{meme_id}")).json()
    assert set(never) == set(hidden)
    assert (never["status"], never["code"]) == (hidden["status"], hidden["code"])


async def test_lists_show_only_the_callers_memes_newest_first(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient, MemeStore],
) -> None:
    a, b, _ = clients
    mine = [str((await create(a, f"a{i}"))["id"]) for i in range(5)]
    theirs = {str((await create(b, f"b{i}"))["id"]) for i in range(3)}
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params = {"limit": "2"} | ({"cursor": cursor} if cursor else {})
        page = (await a.get("/memes", params=params)).json()
        assert len(page["items"]) <= 2
        seen += [m["id"] for m in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == mine[::-1]
    assert not theirs & set(seen)
    listed_b = (await b.get("/memes", params={"limit": 100})).json()
    assert {m["id"] for m in listed_b["items"]} == theirs


async def test_a_cursor_is_checked_and_bound_to_its_tenant(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient, MemeStore],
) -> None:
    a, b, _ = clients
    for i in range(3):
        await create(a, f"a{i}")
    cursor = (await a.get("/memes", params={"limit": 1})).json()["next_cursor"]
    assert cursor
    for client, value in ((a, "garbage!"), (a, "e30="), (b, cursor)):
        response = await client.get("/memes", params={"cursor": value})
        assert response.status_code == 400, value
        assert response.json()["code"] == "invalid-cursor"


async def test_idempotency_keys_are_per_tenant(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient, MemeStore],
) -> None:
    a, b, _ = clients
    first = await create(a, "same", **{"Idempotency-Key": "k1"})
    other = await create(b, "same", **{"Idempotency-Key": "k1"})
    again = await create(a, "same", **{"Idempotency-Key": "k1"})
    assert first["id"] == again["id"] != other["id"]


async def test_a_meme_shows_when_it_expires(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient, MemeStore], resources: Settings
) -> None:
    a, _, _ = clients
    meme = await create(a, "ephemeral")
    expires = datetime.fromisoformat(str(meme["expires_at"]))
    created = datetime.fromisoformat(str(meme["created_at"]))
    assert expires.tzinfo is not None
    assert abs(expires - created - timedelta(days=resources.retention_days)) < timedelta(seconds=1)
    assert expires > datetime.now(UTC)


async def test_delete_removes_the_meme_and_its_outputs(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient, MemeStore],
    aws: AwsClients,
    resources: Settings,
) -> None:
    a, _, store = clients
    meme_id = str((await create(a, "bye"))["id"])
    key = f"memes/tenant-a/{meme_id}.jpg"
    for output in (key, f"memes/tenant-a/{meme_id}.thumb.jpg"):
        await aws.s3.put_object(Bucket=resources.bucket, Key=output, Body=b"x")
    await finish(store, meme_id, key)
    assert (await a.delete(f"/memes/{meme_id}")).status_code == 204
    listing = await aws.s3.list_objects_v2(Bucket=resources.bucket, Prefix="memes/")
    assert listing.get("KeyCount", 0) == 0
    assert (await a.get(f"/memes/{meme_id}")).status_code == 404
    assert (await a.delete(f"/memes/{meme_id}")).status_code == 404


def upload(template_id: str) -> dict[str, object]:
    data = gradient(16, 16, "PNG")
    form = {"name": template_id, "id": template_id}
    return {"data": form, "files": {"file": ("t.png", data, "image/png")}}


async def test_templates_are_per_tenant_and_seeds_are_public(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient, MemeStore],
    aws: AwsClients,
    resources: Settings,
) -> None:
    a, b, _ = clients
    await TemplateStore(aws.s3, resources.bucket).upload(
        "seed",
        tenant=PUBLIC_TENANT,
        name="Seed",
        data=b"x",
        content_type="image/png",
        width=1,
        height=1,
    )
    assert (await a.post("/templates", **upload("a-only"))).status_code == 201
    assert (await b.post("/templates", **upload("b-only"))).status_code == 201
    theirs = await b.get("/templates/a-only")
    assert theirs.status_code == 404
    assert theirs.json()["code"] == "template-not-found"
    assert (await a.get("/templates/a-only")).status_code == 200
    for client, own in ((a, "a-only"), (b, "b-only")):
        listed = (await client.get("/templates", params={"limit": 100})).json()
        ids = [t["id"] for t in listed["items"]]
        while listed["next_cursor"]:
            listed = (
                await client.get("/templates", params={"cursor": listed["next_cursor"]})
            ).json()
            ids += [t["id"] for t in listed["items"]]
        assert sorted(ids) == sorted([own, "seed"])
        assert (await client.get("/templates/seed")).status_code == 200
    # Deleting: never another tenant's, never a seed; one's own, once.
    assert (await a.delete("/templates/b-only")).status_code == 404
    assert (await b.get("/templates/b-only")).status_code == 200
    assert (await a.delete("/templates/seed")).status_code == 404
    assert (await b.get("/templates/seed")).status_code == 200
    assert (await a.delete("/templates/a-only")).status_code == 204
    assert (await a.get("/templates/a-only")).status_code == 404
    assert (await a.delete("/templates/a-only")).status_code == 404


async def test_a_meme_on_another_tenants_template_cannot_see_it(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient, MemeStore],
) -> None:
    a, b, _ = clients
    assert (await a.post("/templates", **upload("private"))).status_code == 201
    response = await b.post(
        "/memes", json={"template_id": "private", "captions": ["x"]}
    )  # captions need the template's layout now: B cannot read A's
    assert response.status_code == 404
    assert response.json()["code"] == "template-not-found"

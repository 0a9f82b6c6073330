"""API keys against the real emulator: the store, the admin command, and the api's answers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from memeforge_api.app import create_app
from memeforge_common.apikeys import ALL_SCOPES, KeyExists, KeyStore, Scope, generate_key
from memeforge_common.aws import AwsClients
from memeforge_common.bootstrap import bootstrap
from memeforge_common.models import utcnow
from memeforge_common.settings import Settings
from pydantic import SecretStr

pytestmark = pytest.mark.integration


@pytest.fixture
def store(aws: AwsClients, resources: Settings) -> KeyStore:
    return KeyStore(aws.dynamodb, resources.table)


@pytest.fixture
async def api(resources: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(resources)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            yield http


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_key_is_stored_hashed_and_listed_per_tenant(
    store: KeyStore, aws: AwsClients, resources: Settings
) -> None:
    new = await store.create("acme", "ci", frozenset({Scope.MEMES_READ}))
    await store.create("other", "ci", ALL_SCOPES)
    record = (
        await aws.dynamodb.get_item(
            TableName=resources.table, Key={"id": {"S": f"apikey#{new.key_id}"}}
        )
    )["Item"]
    assert new.secret not in json.dumps(record)
    listed = await store.list("acme")
    assert [(k.key_id, k.name, k.scopes) for k in listed] == [
        (new.key_id, "ci", frozenset({Scope.MEMES_READ}))
    ]
    assert listed[0].accepts(new.secret)
    assert not listed[0].accepts(generate_key().secret)


async def test_revocation_is_recorded_once(store: KeyStore) -> None:
    new = await store.create("acme", "ci", ALL_SCOPES)
    assert await store.revoke(new.key_id)
    first = await store.get(new.key_id)
    assert await store.revoke(new.key_id)
    again = await store.get(new.key_id)
    assert first is not None
    assert again is not None
    assert first.revoked_at is not None
    assert again.revoked_at == first.revoked_at
    assert not again.accepts(new.secret)
    assert not await store.revoke(generate_key().key_id)


async def test_last_use_is_written_at_most_once_a_minute(store: KeyStore) -> None:
    new = await store.create("acme", "ci", ALL_SCOPES)
    now = utcnow()
    assert await store.touch(new.key_id, now)
    assert not await store.touch(new.key_id, now + timedelta(seconds=59))
    assert await store.touch(new.key_id, now + timedelta(seconds=61))
    key = await store.get(new.key_id)
    assert key is not None
    assert key.last_used_at == now + timedelta(seconds=61)


async def test_importing_a_token_is_idempotent_but_never_takes_over_a_key(
    store: KeyStore,
) -> None:
    given = generate_key()
    await store.create("acme", "first", ALL_SCOPES, key=given)
    await store.create("acme", "first", ALL_SCOPES, key=given)  # the Job ran twice
    with pytest.raises(KeyExists):
        await store.create("evil", "first", ALL_SCOPES, key=given)
    impostor = type(given)(key_id=given.key_id, secret=generate_key().secret)
    with pytest.raises(KeyExists):
        await store.create("acme", "first", ALL_SCOPES, key=impostor)


async def test_the_admin_command_creates_lists_and_revokes(resources: Settings) -> None:
    env_table = {"MEMEFORGE_TABLE": resources.table}

    def keys(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "memeforge_common.keys", *args],
            env={**os.environ, **env_table},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    created = keys("create", "--tenant", "acme", "--name", "ops", "--scope", "memes:read")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token.startswith("mf_")
    key_id = token.split("_")[1]
    listed = [json.loads(line) for line in keys("list", "--tenant", "acme").stdout.splitlines()]
    assert [(k["key_id"], k["scopes"], k["revoked_at"]) for k in listed] == [
        (key_id, ["memes:read"], None)
    ]
    assert "secret" not in json.dumps(listed)
    assert keys("revoke", key_id).returncode == 0
    assert json.loads(keys("list", "--tenant", "acme").stdout)["revoked_at"] is not None
    assert keys("revoke", "0" * 16).returncode == 1
    assert keys("create", "--tenant", "public", "--name", "x").returncode == 2


async def test_no_key_a_bad_key_or_a_revoked_key_is_a_401_problem(
    api: httpx.AsyncClient, store: KeyStore
) -> None:
    new = await store.create("acme", "ci", ALL_SCOPES)
    wrong_secret = f"mf_{new.key_id}_{generate_key().secret}"
    for headers in ({}, bearer("nonsense"), bearer(wrong_secret), {"Authorization": "Basic x"}):
        response = await api.get("/templates", headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.json()["code"] == "unauthorized"
    assert (await api.get("/templates", headers=bearer(new.token))).status_code == 200
    assert (await api.get("/healthz")).status_code == 200  # probes need no key


async def test_a_missing_scope_is_a_403_naming_it(api: httpx.AsyncClient, store: KeyStore) -> None:
    reader = await store.create("acme", "reader", frozenset({Scope.MEMES_READ}))
    response = await api.post(
        "/memes", json={"template_id": "x", "top": "hi"}, headers=bearer(reader.token)
    )
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "insufficient-scope"
    assert response.json()["required_scope"] == "memes:write"
    templates = await api.get("/templates", headers=bearer(reader.token))
    assert templates.status_code == 403


async def test_a_used_key_records_its_last_use(api: httpx.AsyncClient, store: KeyStore) -> None:
    new = await store.create("acme", "ci", ALL_SCOPES)
    assert (await store.get(new.key_id)).last_used_at is None  # type: ignore[union-attr]
    assert (await api.get("/templates", headers=bearer(new.token))).status_code == 200
    used = await store.get(new.key_id)
    assert used is not None
    assert used.last_used_at is not None


async def test_the_bootstrap_imports_a_first_key_from_the_environment(
    resources: Settings, store: KeyStore, api: httpx.AsyncClient
) -> None:
    given = generate_key()
    settings = resources.model_copy(
        update={"first_api_key": SecretStr(given.token), "first_api_key_tenant": "acme"}
    )
    await bootstrap(settings, seed=False)
    await bootstrap(settings, seed=False)  # a Job that runs again changes nothing
    assert [k.key_id for k in await store.list("acme")] == [given.key_id]
    assert (await api.get("/templates", headers=bearer(given.token))).status_code == 200
